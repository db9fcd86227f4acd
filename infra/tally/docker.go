package tally

import (
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

	frontend, err := network(ctx, n, "frontend", false, on)
	if err != nil {
		return nil, err
	}
	// Internal: no route out, nothing published; only web and Redis join it.
	backend, err := network(ctx, n, "backend", true, on)
	if err != nil {
		return nil, err
	}

	volume, err := docker.NewVolume(ctx, n.of("redis-data"), &docker.VolumeArgs{
		Name:   pulumi.String(n.of("redis-data")),
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
	redis, err := docker.NewContainer(ctx, n.of("redis"), hardened(&docker.ContainerArgs{
		Name:  pulumi.String(n.of("redis")),
		Image: redisImage.ImageId,
		User:  pulumi.String(redisUser),
		// The script's text runs as `sh -c`, so a remote host needs no copy.
		Command: pulumi.StringArray{pulumi.String("sh"), pulumi.String("-c"), pulumi.String(files.RedisStart), pulumi.String("redis-start")},
		Envs:    pulumi.StringArray{pulumi.String("REDIS_PASSWORD_FILE=" + passwordPath)},
		Volumes: docker.ContainerVolumeArray{docker.ContainerVolumeArgs{
			VolumeName: volume.Name, ContainerPath: pulumi.String("/data"),
		}},
		NetworksAdvanced: docker.ContainerNetworksAdvancedArray{docker.ContainerNetworksAdvancedArgs{
			Name: backend.Name, Aliases: pulumi.StringArray{pulumi.String(redisAlias)},
		}},
		Healthcheck: healthcheck(redisHealthcheck, 15),
		// Time to write the AOF and the final snapshot on the way down.
		DestroyGraceSeconds: pulumi.Int(30),
		Labels:              containerLabels(n.labels("redis")),
	}, 256, password.mount), slices.Concat(on, password.readers(),
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
		web, err := docker.NewContainer(ctx, n.of("web", strconv.Itoa(i)), hardened(&docker.ContainerArgs{
			Image: appImage,
			Envs:  webEnv(),
			NetworksAdvanced: docker.ContainerNetworksAdvancedArray{
				docker.ContainerNetworksAdvancedArgs{Name: frontend.Name, Aliases: pulumi.StringArray{pulumi.String(webAlias)}},
				docker.ContainerNetworksAdvancedArgs{Name: backend.Name},
			},
			Healthcheck: healthcheck(webHealthcheck, 3),
			// SIGTERM, then time to finish in-flight requests (the app's
			// SHUTDOWN_TIMEOUT is 10s) before the container is removed.
			DestroyGraceSeconds: pulumi.Int(15),
			Labels:              containerLabels(n.labels("web")),
		}, 64, password.mount), append(slices.Concat(on, password.readers()),
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
	// nginx finds the replicas through Docker's DNS (nginx/upstream.conf), so
	// nothing here depends on the number of replicas: scaling leaves it be.
	_, err = docker.NewContainer(ctx, n.of("nginx"), hardened(&docker.ContainerArgs{
		Name:        pulumi.String(n.of("nginx")),
		Image:       nginxImage.ImageId,
		User:        pulumi.String(nginxUser),
		Entrypoints: pulumi.StringArray{pulumi.String("sh"), pulumi.String("-c"), pulumi.String(nginxStart)},
		Envs: pulumi.StringArray{
			pulumi.String("TALLY_NGINX_CONF=" + files.NginxConf),
			pulumi.String("TALLY_UPSTREAM_CONF=" + files.UpstreamConf),
		},
		Ports: docker.ContainerPortArray{docker.ContainerPortArgs{
			Internal: pulumi.Int(nginxPort), External: pulumi.Int(cfg.HTTPPort),
		}},
		NetworksAdvanced: docker.ContainerNetworksAdvancedArray{docker.ContainerNetworksAdvancedArgs{Name: frontend.Name}},
		Healthcheck:      healthcheck(nginxHealthcheck, 5),
		StopSignal:       pulumi.String("SIGQUIT"), // nginx's graceful stop
		// Without it the provider kills nginx, cutting the requests it holds.
		DestroyGraceSeconds: pulumi.Int(10),
		Labels:              containerLabels(n.labels("nginx")),
	}, 64, nil), append(on, pulumi.DeleteBeforeReplace(true))...) // it owns the host port
	if err != nil {
		return nil, err
	}

	s.URL = pulumi.Sprintf("http://%s:%d/", urlHost(cfg.DockerHost), cfg.HTTPPort).ToStringOutput()
	s.WebContainers = webNames.ToStringArrayOutput()
	s.RedisVolume = volume.Name
	s.Networks = pulumi.StringMap{"frontend": frontend.Name, "backend": backend.Name}.ToStringMapOutput()
	return s, ctx.RegisterResourceOutputs(s, pulumi.Map{
		"url": s.URL, "webContainers": s.WebContainers, "redisVolume": s.RedisVolume, "networks": s.Networks,
	})
}

func network(ctx *pulumi.Context, n names, role string, internal bool, on []pulumi.ResourceOption) (*docker.Network, error) {
	return docker.NewNetwork(ctx, n.of(role), &docker.NetworkArgs{
		Name:     pulumi.String(n.of(role)),
		Driver:   pulumi.String("bridge"),
		Internal: pulumi.Bool(internal),
		Labels:   networkLabels(n.labels(role)),
	}, on...)
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

// pulledImage makes sure the host has image. KeepLocally: destroying the
// stack does not remove an image other stacks may use.
func pulledImage(ctx *pulumi.Context, name, image string, on []pulumi.ResourceOption) (*docker.RemoteImage, error) {
	return docker.NewRemoteImage(ctx, name, &docker.RemoteImageArgs{
		Name: pulumi.String(image), KeepLocally: pulumi.Bool(true),
	}, on...)
}

// appImage is the app image to run: the configured one, or one built on the
// target host from the repository's Dockerfile, tagged with the hash of its
// inputs so that only a change to the app rolls the replicas.
func appImage(ctx *pulumi.Context, n names, cfg Config, files Files, on []pulumi.ResourceOption) (pulumi.StringInput, error) {
	if cfg.AppImage != "" {
		img, err := pulledImage(ctx, n.of("web-image"), cfg.AppImage, on)
		if err != nil {
			return nil, err
		}
		return img.ImageId, nil
	}
	img, err := docker.NewImage(ctx, n.of("web-image"), &docker.ImageArgs{
		ImageName: pulumi.String(n.of("web") + ":" + files.AppHash),
		SkipPush:  pulumi.Bool(true), // built on the target host itself
		Build: &docker.DockerBuildArgs{
			// The Dockerfile is the context's own (the default).
			Context:  pulumi.String(files.Root),
			Platform: pulumi.String(cfg.Platform),
			Args:     pulumi.StringMap{"GO_IMAGE": pulumi.String(cfg.GoImage), "VERSION": pulumi.String(files.AppHash)},
		},
	}, on...)
	if err != nil {
		return nil, err
	}
	return img.ImageName, nil
}

// hardened applies what every tally container gets: read-only root, no
// capabilities, no privilege gain, a writable /tmp in memory, a memory
// limit in MB with no swap beyond it, bounded logs, a restart policy, and
// Pulumi waiting until its health check passes.
//
// Memory swap and logging are set even where the daemon's defaults would
// do: the provider reads back whatever the daemon chose (swap twice the
// limit, the daemon's log options), and anything read back that the
// program did not set is a diff that replaces the container on every up.
//
// mount, when not nil, adds what the container mounts besides.
func hardened(args *docker.ContainerArgs, memoryMB int, mount func(*docker.ContainerArgs)) *docker.ContainerArgs {
	if mount != nil {
		mount(args)
	}
	args.Memory = pulumi.Int(memoryMB)
	args.MemorySwap = pulumi.Int(memoryMB)
	args.LogDriver = pulumi.String("json-file")
	args.LogOpts = pulumi.StringMap{"max-size": pulumi.String("10m"), "max-file": pulumi.String("3")}
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
		Interval:    pulumi.String("2s"),
		Timeout:     pulumi.String("2s"),
		Retries:     pulumi.Int(retries),
		StartPeriod: pulumi.String("5s"),
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
