package stack

import (
	"fmt"
	"slices"
	"strconv"

	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// Docker is tally on one Docker host, local or remote: two networks, and
// each service as containers, with its data volume and the password file.
type Docker struct {
	pulumi.ResourceState

	URL           pulumi.StringOutput      `pulumi:"url"`
	WebContainers pulumi.StringArrayOutput `pulumi:"webContainers"`
	RedisVolume   pulumi.StringOutput      `pulumi:"redisVolume"`
	Networks      pulumi.StringMapOutput   `pulumi:"networks"`
	// The config release nginx serves; the deploy fails on one it refuses.
	NginxConfig pulumi.StringOutput `pulumi:"nginxConfig"`
}

// NewDocker declares svcs on the Docker host cfg names.
func NewDocker(ctx *pulumi.Context, name string, cfg Config, files Files, svcs []service, opts ...pulumi.ResourceOption) (*Docker, error) {
	s := &Docker{}
	b, err := newBase(ctx, "tally:docker:Stack", name, s, cfg, "bridge", opts...)
	if err != nil {
		return nil, err
	}
	n, on, nets := b.n, b.on, b.nets

	images := map[string]pulumi.StringInput{}
	for _, svc := range svcs {
		if images[svc.role], err = hostImage(ctx, n, svc, cfg, files, on); err != nil {
			return nil, err
		}
	}
	password, err := newPasswordFile(ctx, n, cfg.RedisPassword, svcs, images, on)
	if err != nil {
		return nil, err
	}

	containers := map[string][]*docker.Container{}
	volumes := map[string]*docker.Volume{}
	var release pulumi.StringOutput
	for _, svc := range svcs {
		args := containerArgs(n, svc, images[svc.role], nets, password)
		opts := slices.Concat(on, []pulumi.ResourceOption{waitedFor(svc, containers)})
		if svc.dataDir != "" {
			volume, err := docker.NewVolume(ctx, n.dataVolume(svc), &docker.VolumeArgs{
				Name:   pulumi.String(n.dataVolume(svc)),
				Labels: volumeLabels(n.labels(svc.role + "-data")),
			}, append(on, pulumi.RetainOnDelete(cfg.RetainData))...)
			if err != nil {
				return nil, err
			}
			volumes[svc.role] = volume
			others, _ := args.Volumes.(docker.ContainerVolumeArray) // nil for none
			args.Volumes = append(docker.ContainerVolumeArray{docker.ContainerVolumeArgs{
				VolumeName: volume.Name, ContainerPath: pulumi.String(svc.dataDir),
			}}, others...)
		}
		// A handoff's instances run in the network namespace of the
		// container that holds the port; others publish their own.
		var holder *portHolder
		if svc.replace == handoff {
			// After what svc waits for, as svc: replacing the holder stops
			// the instances in its namespace, so the new ones must be able
			// to start right after it (an update from a stack deployed
			// before the holder replaces the old nginx by it).
			if holder, err = newPortHolder(ctx, n, svc, images[svc.role], nets, slices.Clone(opts)); err != nil {
				return nil, err
			}
			holder.join(args)
		} else if len(svc.publish) > 0 {
			args.Ports = ports(svc)
		}
		// Another service's data, read-only where that service keeps it
		// (nginx reads the certificate the certs service keeps); the
		// release step checks the config with it too.
		var reads func(*docker.ContainerArgs)
		if svc.readsData != "" {
			owner, _ := byRole(svcs, svc.readsData) // checkServices makes sure of it
			volume := volumes[svc.readsData].Name
			reads = func(a *docker.ContainerArgs) { mount(a, volume, owner.dataDir, true) }
			reads(args)
		}
		if svc.reloads != nil {
			r, err := newRelease(ctx, n, svc, images[svc.role], nets, holder, reads, slices.Clone(opts))
			if err != nil {
				return nil, err
			}
			mount(args, r.volume.Name, releases, true)
			opts = append(opts, pulumi.DependsOn([]pulumi.Resource{r.step}))
			release = r.current
		}
		if svc.password {
			opts = append(opts, password.readers()...)
		}
		if containers[svc.role], err = declareContainers(ctx, n, svc, args, opts); err != nil {
			return nil, err
		}
	}

	var webNames pulumi.StringArray
	for _, c := range containers[webRole] {
		webNames = append(webNames, c.Name)
	}
	s.URL = stackURL(cfg)
	s.WebContainers = webNames.ToStringArrayOutput()
	s.RedisVolume = volumes[redisRole].Name
	s.Networks = networkNames(nets)
	s.NginxConfig = release
	return s, ctx.RegisterResourceOutputs(s, s.outputs())
}

// outputs are the stack's outputs, by the names it exports them under.
func (s *Docker) outputs() pulumi.Map {
	return pulumi.Map{"url": s.URL, "webContainers": s.WebContainers, "redisVolume": s.RedisVolume, "networks": s.Networks, "nginxConfig": s.NginxConfig}
}

// declareContainers declares svc's containers, replaced as svc.replace says.
//
// start-first: no Docker name. Pulumi names each container after its
// resource with a random suffix (tally-dev-web-1-1a2b3c4), and a
// replacement gets a new one, so any change to a replica starts the new
// container beside the old, waits until it is healthy, and only then
// removes the old: a rollout never leaves nginx without replicas. The
// provider asks for delete-before-replace on every container; these say
// otherwise.
//
// handoff: as start-first; the old container's stop signal makes it give
// its listener up (see newPortHolder).
//
// stop-first: one container with a fixed name (tally-dev-redis), which
// goes before its replacement comes.
func declareContainers(ctx *pulumi.Context, n names, svc service, args *docker.ContainerArgs, opts []pulumi.ResourceOption) ([]*docker.Container, error) {
	if svc.replace == stopFirst {
		if svc.replicas != 1 && svc.replicas != everyNode {
			return nil, fmt.Errorf("service %s: %d replicas replaced stop-first would share one container name", svc.role, svc.replicas)
		}
		args.Name = pulumi.String(n.of(svc.role))
		c, err := docker.NewContainer(ctx, n.of(svc.role), args, append(opts, pulumi.DeleteBeforeReplace(true))...)
		return []*docker.Container{c}, err
	}
	var out []*docker.Container
	for i := 1; i <= max(svc.replicas, 1); i++ {
		c, err := docker.NewContainer(ctx, n.of(svc.role, strconv.Itoa(i)), args, append(opts, pulumi.DeleteBeforeReplace(false))...)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// ports publishes svc's ports on the host.
func ports(svc service) docker.ContainerPortArray {
	var out docker.ContainerPortArray
	for _, p := range svc.publish {
		port := docker.ContainerPortArgs{Internal: pulumi.Int(p.container), External: pulumi.Int(p.host)}
		if svc.publishOn != "" {
			port.Ip = pulumi.String(svc.publishOn)
		}
		out = append(out, port)
	}
	return out
}

// mount adds a volume to a container's, at path, read-only if readOnly.
func mount(args *docker.ContainerArgs, volume pulumi.StringInput, path string, readOnly bool) {
	volumes, _ := args.Volumes.(docker.ContainerVolumeArray) // nil for none
	v := docker.ContainerVolumeArgs{VolumeName: volume, ContainerPath: pulumi.String(path)}
	if readOnly {
		v.ReadOnly = pulumi.Bool(true)
	}
	args.Volumes = append(volumes, v)
}

// hostImage is svc's image on the host: built there from the repository,
// or pulled.
func hostImage(ctx *pulumi.Context, n names, svc service, cfg Config, files Files, on []pulumi.ResourceOption) (pulumi.StringInput, error) {
	if svc.image.build {
		return builtImage(ctx, n, svc, cfg, files, on)
	}
	img, err := pulledImage(ctx, n.of(svc.role, "image"), svc.image.ref, on)
	if err != nil {
		return nil, err
	}
	return img.ImageId, nil
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
	if svc.stackDNS {
		args.Dns, args.DnsOpts = pulumi.ToStringArray(noUpstreamDNS), pulumi.ToStringArray(dnsOptions)
	}
	args.Cpus = pulumi.String(fmt.Sprintf("%d.0", svc.cpus)) // as read back
	args.NetworksAdvanced = attachments(svc, nets)
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
	args.LogDriver = pulumi.String(logDriver)
	args.LogOpts = logOptions()
	args.ReadOnly = pulumi.Bool(true)
	args.Capabilities = docker.ContainerCapabilitiesArgs{Drops: pulumi.StringArray{pulumi.String(dropAll)}}
	args.SecurityOpts = pulumi.StringArray{pulumi.String(noNewPrivileges)}
	args.Tmpfs = pulumi.StringMap{tmpDir: pulumi.String("rw,noexec,nosuid,size=16m")}
	args.Restart = pulumi.String("unless-stopped")
	args.Wait = pulumi.Bool(true)
	args.WaitTimeout = pulumi.Int(90)
	return args
}

// attachments are svc's networks, with its aliases there.
func attachments(svc service, nets map[string]*docker.Network) docker.ContainerNetworksAdvancedArray {
	var attach docker.ContainerNetworksAdvancedArray
	for _, a := range svc.networks {
		net := docker.ContainerNetworksAdvancedArgs{Name: nets[a.network].Name}
		if a.alias != "" {
			net.Aliases = pulumi.StringArray{pulumi.String(a.alias)}
		}
		attach = append(attach, net)
	}
	return attach
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

func containerLabels(m map[string]string) docker.ContainerLabelArray {
	return labelList(m, func(k, v pulumi.String) docker.ContainerLabelInput {
		return docker.ContainerLabelArgs{Label: k, Value: v}
	})
}

func volumeLabels(m map[string]string) docker.VolumeLabelArray {
	return labelList(m, func(k, v pulumi.String) docker.VolumeLabelInput {
		return docker.VolumeLabelArgs{Label: k, Value: v}
	})
}
