package tally

import (
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// DockerStack is tally on one Docker host, local or remote: two networks,
// the Redis volume and container, the web containers and nginx.
type DockerStack struct {
	pulumi.ResourceState

	URL           pulumi.StringOutput      `pulumi:"url"`
	WebContainers pulumi.StringArrayOutput `pulumi:"webContainers"`
	RedisVolume   pulumi.StringOutput      `pulumi:"redisVolume"`
	Networks      pulumi.StringMapOutput   `pulumi:"networks"`
}

// NewDockerStack declares the stack on the Docker host cfg names.
func NewDockerStack(ctx *pulumi.Context, name string, cfg Config, files Files, opts ...pulumi.ResourceOption) (*DockerStack, error) {
	s := &DockerStack{}
	if err := ctx.RegisterComponentResource("tally:docker:Stack", name, s, opts...); err != nil {
		return nil, err
	}
	n := namesFor(ctx)

	provider, err := docker.NewProvider(ctx, n.of("docker"), providerArgs(cfg), pulumi.Parent(s))
	if err != nil {
		return nil, err
	}
	on := []pulumi.ResourceOption{pulumi.Parent(s), pulumi.Provider(provider)}

	nets, err := networks(ctx, n, "bridge", on)
	if err != nil {
		return nil, err
	}
	webSpec, redisSpec, nginxSpec := services(files)

	volume, err := docker.NewVolume(ctx, n.dataVolume(redisSpec), &docker.VolumeArgs{
		Name:   pulumi.String(n.dataVolume(redisSpec)),
		Labels: volumeLabels(n.labels("redis-data")),
	}, append(on, pulumi.RetainOnDelete(cfg.RetainData))...)
	if err != nil {
		return nil, err
	}

	redisImage, err := pulledImage(ctx, n.of("redis-image"), cfg.RedisImage, on)
	if err != nil {
		return nil, err
	}
	password, err := newPasswordFile(ctx, n, cfg.RedisPassword, redisImage.ImageId, on)
	if err != nil {
		return nil, err
	}
	redisArgs := containerArgs(n, redisSpec, redisImage.ImageId, nets, password)
	redisArgs.Name = pulumi.String(n.of("redis"))
	redisArgs.Volumes = append(docker.ContainerVolumeArray{docker.ContainerVolumeArgs{
		VolumeName: volume.Name, ContainerPath: pulumi.String(redisSpec.dataDir),
	}}, redisArgs.Volumes.(docker.ContainerVolumeArray)...)
	redis, err := docker.NewContainer(ctx, n.of("redis"), redisArgs, slices.Concat(on, password.readers(),
		[]pulumi.ResourceOption{pulumi.DeleteBeforeReplace(true)})...) // one Redis per stack, by name
	if err != nil {
		return nil, err
	}

	appImage, err := appImage(ctx, n, cfg, files, on)
	if err != nil {
		return nil, err
	}
	var webNames pulumi.StringArray
	for i := 1; i <= cfg.Replicas; i++ {
		// No Name: Pulumi names each container after its resource with a
		// random suffix (tally-dev-web-1-1a2b3c4), and a replacement gets a
		// new one. So any change to a replica starts the new container beside
		// the old, waits until it is healthy, and only then removes the old:
		// a rollout never leaves nginx without replicas.
		web, err := docker.NewContainer(ctx, n.of("web", strconv.Itoa(i)), containerArgs(n, webSpec, appImage, nets, password),
			append(slices.Concat(on, password.readers()),
				pulumi.DependsOn([]pulumi.Resource{redis}),
				// The provider asks for delete-before-replace on every container;
				// replicas need the opposite (see above).
				pulumi.DeleteBeforeReplace(false))...)
		if err != nil {
			return nil, err
		}
		webNames = append(webNames, web.Name)
	}

	nginxImage, err := pulledImage(ctx, n.of("nginx-image"), cfg.NginxImage, on)
	if err != nil {
		return nil, err
	}
	nginxArgs := containerArgs(n, nginxSpec, nginxImage.ImageId, nets, nil)
	nginxArgs.Name = pulumi.String(n.of("nginx"))
	nginxArgs.Ports = docker.ContainerPortArray{docker.ContainerPortArgs{
		Internal: pulumi.Int(nginxSpec.port), External: pulumi.Int(cfg.HTTPPort),
	}}
	_, err = docker.NewContainer(ctx, n.of("nginx"), nginxArgs, append(on, pulumi.DeleteBeforeReplace(true))...) // it owns the host port
	if err != nil {
		return nil, err
	}

	s.URL = pulumi.Sprintf("http://%s:%d/", urlHost(cfg.DockerHost), cfg.HTTPPort).ToStringOutput()
	s.WebContainers = webNames.ToStringArrayOutput()
	s.RedisVolume = volume.Name
	s.Networks = networkNames(nets)
	return s, ctx.RegisterResourceOutputs(s, s.outputs())
}

// outputs are the stack's outputs, by the names it exports them under.
func (s *DockerStack) outputs() pulumi.Map {
	return pulumi.Map{"url": s.URL, "webContainers": s.WebContainers, "redisVolume": s.RedisVolume, "networks": s.Networks}
}

// networks declares the stack's two networks with driver (bridge on one
// engine, overlay on a swarm), by role; backend is internal.
func networks(ctx *pulumi.Context, n names, driver string, on []pulumi.ResourceOption) (map[string]*docker.Network, error) {
	nets := map[string]*docker.Network{}
	for _, role := range []string{frontend, backend} {
		net, err := docker.NewNetwork(ctx, n.of(role), &docker.NetworkArgs{
			Name:     pulumi.String(n.of(role)),
			Driver:   pulumi.String(driver),
			Internal: pulumi.Bool(role == backend),
			Labels:   networkLabels(n.labels(role)),
		}, on...)
		if err != nil {
			return nil, err
		}
		nets[role] = net
	}
	return nets, nil
}

func networkNames(nets map[string]*docker.Network) pulumi.StringMapOutput {
	return pulumi.StringMap{frontend: nets[frontend].Name, backend: nets[backend].Name}.ToStringMapOutput()
}

func providerArgs(cfg Config) *docker.ProviderArgs {
	args := &docker.ProviderArgs{}
	if cfg.DockerHost != "" {
		args.Host = pulumi.String(cfg.DockerHost)
	}
	if len(cfg.SSHOpts) > 0 {
		args.SshOpts = pulumi.ToStringArray(cfg.SSHOpts)
	}
	if cfg.CAPem != "" {
		args.CaMaterial = cfg.CAPem.Output()
	}
	if cfg.CertPem != "" {
		args.CertMaterial = cfg.CertPem.Output()
		args.KeyMaterial = cfg.KeyPem.Output()
	}
	return args
}

// appImage is the app image to run: the configured one, pulled on the
// host, or one built there (builtImage).
func appImage(ctx *pulumi.Context, n names, cfg Config, files Files, on []pulumi.ResourceOption) (pulumi.StringInput, error) {
	if cfg.AppImage != "" {
		img, err := pulledImage(ctx, n.of("web-image"), cfg.AppImage, on)
		if err != nil {
			return nil, err
		}
		return img.ImageId, nil
	}
	return builtImage(ctx, n, cfg, files, on)
}

// containerArgs is svc as a container of the stack, hardened: read-only
// root, no capabilities, no privilege gain, a writable /tmp in memory, a
// memory limit with no swap beyond it, bounded logs, a restart policy, and
// Pulumi waiting until its health check passes. password, when svc reads
// it, is where the file comes from.
//
// Memory swap and logging are set even where the daemon's defaults would
// do: the provider reads back whatever the daemon chose (swap twice the
// limit, the daemon's log options), and anything read back that the
// program did not set is a diff that replaces the container on every up.
func containerArgs(n names, svc service, image pulumi.StringInput, nets map[string]*docker.Network, password *passwordFile) *docker.ContainerArgs {
	args := &docker.ContainerArgs{
		Image:               image,
		Envs:                pulumi.ToStringArray(svc.env),
		Healthcheck:         healthcheck(svc.health, svc.retries),
		DestroyGraceSeconds: pulumi.Int(svc.stopGrace),
		Labels:              containerLabels(n.labels(svc.role)),
	}
	if svc.user != "" {
		args.User = pulumi.String(svc.user)
	}
	if svc.entrypoint != nil {
		args.Entrypoints = pulumi.ToStringArray(svc.entrypoint)
	}
	if svc.command != nil {
		args.Command = pulumi.ToStringArray(svc.command)
	}
	if svc.stopSignal != "" {
		args.StopSignal = pulumi.String(svc.stopSignal)
	}
	if svc.cpus > 0 {
		args.Cpus = pulumi.String(fmt.Sprintf("%d.0", svc.cpus)) // as read back
	}
	var attach docker.ContainerNetworksAdvancedArray
	for _, a := range svc.networks {
		net := docker.ContainerNetworksAdvancedArgs{Name: nets[a.network].Name}
		if a.alias != "" {
			net.Aliases = pulumi.StringArray{pulumi.String(a.alias)}
		}
		attach = append(attach, net)
	}
	args.NetworksAdvanced = attach
	if svc.password {
		password.mount(args)
	}
	return hardened(args, svc.memoryMB)
}

// hardened applies to args what every container of the stack gets (see
// containerArgs), the secrets' holder too.
func hardened(args *docker.ContainerArgs, memoryMB int) *docker.ContainerArgs {
	args.Memory = pulumi.Int(memoryMB)
	args.MemorySwap = pulumi.Int(memoryMB)
	args.LogDriver = pulumi.String("json-file")
	args.LogOpts = pulumi.StringMap{"max-size": pulumi.String(logMaxSize), "max-file": pulumi.String(logMaxFiles)}
	args.ReadOnly = pulumi.Bool(true)
	args.Capabilities = docker.ContainerCapabilitiesArgs{Drops: pulumi.StringArray{pulumi.String("ALL")}}
	args.SecurityOpts = pulumi.StringArray{pulumi.String("no-new-privileges:true")}
	args.Tmpfs = pulumi.StringMap{"/tmp": pulumi.String("rw,noexec,nosuid,size=16m")}
	args.Restart = pulumi.String("unless-stopped")
	args.Wait = pulumi.Bool(true)
	args.WaitTimeout = pulumi.Int(90)
	return args
}

func healthcheck(test []string, retries int) docker.ContainerHealthcheckArgs {
	return docker.ContainerHealthcheckArgs{
		Tests:       pulumi.ToStringArray(test),
		Interval:    pulumi.String(healthInterval),
		Timeout:     pulumi.String(healthTimeout),
		Retries:     pulumi.Int(retries),
		StartPeriod: pulumi.String(healthStartPeriod),
	}
}

// Docker labels in key order, in the list type each pulumi-docker resource
// takes.
func containerLabels(m map[string]string) docker.ContainerLabelArray {
	return labelList(m, func(k, v pulumi.String) docker.ContainerLabelInput {
		return docker.ContainerLabelArgs{Label: k, Value: v}
	})
}

func networkLabels(m map[string]string) docker.NetworkLabelArray {
	return labelList(m, func(k, v pulumi.String) docker.NetworkLabelInput {
		return docker.NetworkLabelArgs{Label: k, Value: v}
	})
}

func volumeLabels(m map[string]string) docker.VolumeLabelArray {
	return labelList(m, func(k, v pulumi.String) docker.VolumeLabelInput {
		return docker.VolumeLabelArgs{Label: k, Value: v}
	})
}

func labelList[E any](m map[string]string, label func(k, v pulumi.String) E) []E {
	var out []E
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, label(pulumi.String(k), pulumi.String(m[k])))
	}
	return out
}
