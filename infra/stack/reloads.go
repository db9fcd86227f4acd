package stack

import (
	"fmt"
	"maps"
	"path"
	"slices"

	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// release is a reloads service's config on one engine: the volume its
// instances read releases from, and the run of the release step that made
// the current one.
type release struct {
	volume *docker.Volume
	// Created for each new release and never started, as the password
	// file's holder: the release's files are uploaded through it into the
	// volume (the provider uploads through a container's root, so it must
	// be writable).
	files *docker.Container
	// Then, for each new release, the release step runs once where the
	// service runs, read-only, and the provider keeps its exit code and
	// what it said. Its image is the service's, so a new image checks the
	// config again.
	step *docker.Container
	// The id of the release the service serves; an error, failing the
	// deploy with the service's own reason, when it refused the release.
	current pulumi.StringOutput
}

const releaseMemoryMB = 32

// newRelease declares svc's config volume, the release's files and the
// release step's run. The run's network is the one svc's instances have:
// the namespace of ports, their port holder, or svc's networks; reads, if
// not nil, mounts what else they read.
func newRelease(ctx *pulumi.Context, n names, svc service, image pulumi.StringInput, nets map[string]*docker.Network, ports *portHolder, reads func(*docker.ContainerArgs), opts []pulumi.ResourceOption) (*release, error) {
	r := svc.reloads
	id := r.id()
	volume, err := docker.NewVolume(ctx, n.of(svc.role, "conf"), &docker.VolumeArgs{
		Name:   pulumi.String(n.of(svc.role, "conf")),
		Labels: volumeLabels(n.labels(svc.role + "-conf")),
	}, opts...)
	if err != nil {
		return nil, err
	}
	var uploads docker.ContainerUploadArray
	for _, name := range slices.Sorted(maps.Keys(r.files)) {
		uploads = append(uploads, docker.ContainerUploadArgs{
			File: pulumi.String(path.Join(releases, id, name)), Content: pulumi.String(r.files[name]), Permissions: pulumi.String("0444"),
		})
	}
	// A secret's content is a Pulumi secret, encrypted in state. The
	// provider uploads as root and cannot set an owner, so the file is
	// readable by all who mount the volume: the release step and the
	// service, which must read it.
	for _, name := range slices.Sorted(maps.Keys(r.secrets)) {
		uploads = append(uploads, docker.ContainerUploadArgs{
			File: pulumi.String(path.Join(releases, id, name)), Content: r.secrets[name].Output(), Permissions: pulumi.String("0444"),
		})
	}
	holder := hardened(&docker.ContainerArgs{
		Image:       image,
		Command:     pulumi.StringArray{pulumi.String("true")},
		NetworkMode: pulumi.String("none"),
		Uploads:     uploads,
		Labels:      containerLabels(n.labels(svc.role + "-conf")),
	}, holderMemoryMB)
	if svc.user != "" {
		holder.User = pulumi.String(svc.user)
	}
	mount(holder, volume.Name, releases, false)
	neverStarted(holder)
	// No Docker names: the next release's are made before these go.
	files, err := docker.NewContainer(ctx, n.of(svc.role, "conf", "files"), holder, append(opts,
		pulumi.DeleteBeforeReplace(false), pulumi.DependsOn([]pulumi.Resource{volume}),
		// Any image will do; a new one need not upload the files again.
		pulumi.IgnoreChanges([]string{"image"}))...)
	if err != nil {
		return nil, err
	}

	args := &docker.ContainerArgs{
		Image:       image,
		Entrypoints: pulumi.StringArray{pulumi.String("sh"), pulumi.String("-c"), pulumi.String(r.release), pulumi.String("release"), pulumi.String(id)},
		Envs:        pulumi.ToStringArray(svc.env),
		Labels:      containerLabels(n.labels(svc.role + "-conf")),
		Cpus:        pulumi.String(fmt.Sprintf("%d.0", svc.cpus)),
	}
	if svc.user != "" {
		args.User = pulumi.String(svc.user)
	}
	mount(args, volume.Name, releases, false)
	if reads != nil {
		reads(args)
	}
	if ports != nil {
		ports.join(args)
	} else {
		args.NetworksAdvanced = attachments(svc, nets)
	}
	hardened(args, releaseMemoryMB)
	// One run, waited for; kept (exited) so its result stays in the state.
	args.Attach = pulumi.Bool(true)
	args.Logs = pulumi.Bool(true)
	args.MustRun = pulumi.Bool(false)
	args.Wait = pulumi.Bool(false)
	args.Restart = pulumi.String("no")
	step, err := docker.NewContainer(ctx, n.of(svc.role, "release"), args, append(opts,
		pulumi.DeleteBeforeReplace(false), pulumi.DependsOn([]pulumi.Resource{files}))...)
	if err != nil {
		return nil, err
	}
	current := pulumi.All(step.ExitCode, step.ContainerLogs).ApplyT(func(v []any) (string, error) {
		if code := v[0].(int); code != 0 {
			return "", fmt.Errorf("%s refused its config (release %s, exit status %d) and keeps serving the one it has:\n%s", svc.role, id, code, v[1].(string))
		}
		return id, nil
	}).(pulumi.StringOutput)
	return &release{volume: volume, files: files, step: step, current: current}, nil
}
