package stack

import (
	"strings"

	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// builtImage builds the repository's Dockerfile (svc's target of it) as
// svc's image, on the engine the provider reaches, tagged with the hash of
// its inputs so that only a change to the app rolls the replicas. With tally:registry it is pushed there and named
// by digest, which every node of a swarm can pull and which reads back
// unchanged; without, it stays on the host that built it.
func builtImage(ctx *pulumi.Context, n names, svc service, cfg Config, files Files, on []pulumi.ResourceOption) (pulumi.StringOutput, error) {
	role, hash := svc.role, files.AppHash
	build := &docker.DockerBuildArgs{
		// The Dockerfile is the context's own (the default).
		Context:  pulumi.String(files.Root),
		Platform: pulumi.String(cfg.Platform),
		Args:     pulumi.StringMap{"GO_IMAGE": pulumi.String(cfg.GoImage), "VERSION": pulumi.String(files.AppHash)},
	}
	if t := svc.image.target; t != "" {
		// Another stage: tagged by its own inputs, not the app's.
		hash = files.CertsHash
		build.Target = pulumi.String(t)
		build.Args = pulumi.StringMap{"GO_IMAGE": pulumi.String(cfg.GoImage)}
	}
	name := n.of(role) + ":" + hash
	args := &docker.ImageArgs{
		ImageName: pulumi.String(name),
		SkipPush:  pulumi.Bool(true),
		Build:     build,
	}
	if cfg.Registry != "" {
		server, _, _ := strings.Cut(cfg.Registry, "/")
		args.ImageName = pulumi.String(cfg.Registry + "/" + name)
		args.SkipPush = pulumi.Bool(false)
		args.Registry = docker.RegistryArgs{Server: pulumi.String(server)}
	}
	img, err := docker.NewImage(ctx, n.of(role, "image"), args, on...)
	if err != nil {
		return pulumi.StringOutput{}, err
	}
	if cfg.Registry != "" {
		return img.RepoDigest, nil
	}
	return img.ImageName, nil
}

// pulledImage makes sure the host has image. KeepLocally: destroying the
// stack does not remove an image other stacks may use.
func pulledImage(ctx *pulumi.Context, name, image string, on []pulumi.ResourceOption) (*docker.RemoteImage, error) {
	return docker.NewRemoteImage(ctx, name, &docker.RemoteImageArgs{
		Name: pulumi.String(image), KeepLocally: pulumi.Bool(true),
	}, on...)
}
