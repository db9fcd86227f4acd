package stack

import (
	"errors"
	"slices"

	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// passwordFile puts the Redis password in a file on a volume of its own,
// which Redis and the app mount read-only at secretsDir: unlike an
// environment value, a file is not shown by `docker inspect`.
//
// The file gets there as an upload into a container that is created and
// never started, the holder: the provider uploads through a container's
// root filesystem, which the running containers have read-only.
type passwordFile struct {
	volume   *docker.Volume
	holder   *docker.Container
	password Secret
}

// The holder runs no program, but needs an image and a user; it takes those
// of the first service that reads the file and runs a pulled image (the
// built app image has no shell). None is made when no service reads it.
func newPasswordFile(ctx *pulumi.Context, n names, password Secret, svcs []service, images map[string]pulumi.StringInput, on []pulumi.ResourceOption) (*passwordFile, error) {
	i := slices.IndexFunc(svcs, func(svc service) bool { return svc.password && !svc.image.build })
	if i < 0 {
		if slices.ContainsFunc(svcs, func(svc service) bool { return svc.password }) {
			return nil, errors.New("the password file needs a service that reads it and runs a pulled image, for its holder")
		}
		return nil, nil
	}
	image, user := images[svcs[i].role], svcs[i].user
	volume, err := docker.NewVolume(ctx, n.of("secrets"), &docker.VolumeArgs{
		Name:   pulumi.String(n.of("secrets")),
		Labels: volumeLabels(n.labels("secrets")),
	}, on...)
	if err != nil {
		return nil, err
	}
	args := hardened(&docker.ContainerArgs{
		Image:       image,
		Command:     pulumi.StringArray{pulumi.String("true")},
		User:        pulumi.String(user),
		NetworkMode: pulumi.String("none"),
		Volumes: docker.ContainerVolumeArray{docker.ContainerVolumeArgs{
			VolumeName: volume.Name, ContainerPath: pulumi.String(secretsDir),
		}},
		Uploads: docker.ContainerUploadArray{docker.ContainerUploadArgs{
			File: pulumi.String(passwordPath), Content: password.Output(), Permissions: pulumi.String("0444"),
		}},
		Labels: containerLabels(n.labels("secrets")),
	}, 16)
	neverStarted(args)
	holder, err := docker.NewContainer(ctx, n.of("secrets", "holder"), args, append(on,
		pulumi.DeleteBeforeReplace(false),
		// Any image will do; a new one need not make a new holder.
		pulumi.IgnoreChanges([]string{"image"}))...)
	if err != nil {
		return nil, err
	}
	return &passwordFile{volume: volume, holder: holder, password: password}, nil
}

// neverStarted makes hardened args those of a holder: a container created
// for the provider to upload files through its root, which must be
// writable, and never started, so nothing runs with a writable root; the
// provider must not wait for it, restart it, or forget it for not running.
func neverStarted(args *docker.ContainerArgs) {
	args.ReadOnly = pulumi.Bool(false)
	args.Start = pulumi.Bool(false)
	args.MustRun = pulumi.Bool(false)
	args.Wait = pulumi.Bool(false)
	args.Restart = pulumi.String("no")
}

// mount adds the volume to a container, read-only.
func (p *passwordFile) mount(args *docker.ContainerArgs) {
	mount(args, p.volume.Name, secretsDir, true)
}

// readers are the options of a container that reads the file: it starts
// once the file is there, and is replaced when the password changes, since
// it reads the file only as it starts.
func (p *passwordFile) readers() []pulumi.ResourceOption {
	return []pulumi.ResourceOption{
		pulumi.DependsOn([]pulumi.Resource{p.holder}),
		pulumi.ReplacementTrigger(p.password.Output()),
	}
}
