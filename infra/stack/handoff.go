package stack

import (
	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// portHolder is the container that holds a handoff service's published port
// on one engine (see handoff in spec.go). It runs sleep and nothing else, on
// the service's networks, and the service's instances run in its network
// namespace, so a new instance listens on the same port beside the old one.
//
// It does not change when they do: a new image, config or command for the
// service leaves it be. What does change it (the port, the address it is
// published on, the networks, the stack's name) replaces it, and with it
// every instance in its namespace: a gap, as stop-first has.
type portHolder struct{ container *docker.Container }

const (
	// With it, the connections queued at a listener that closes move to
	// another listener of its SO_REUSEPORT group instead of being reset:
	// what makes the old instance's quitting drop none. Per network
	// namespace, so set on the holder, whose namespace it is.
	migrateSysctl = "net.ipv4.tcp_migrate_req"
	// sleep needs next to nothing.
	holderMemoryMB = 16
	holderCpus     = "0.1"
)

// newPortHolder declares svc's port holder: tally-dev-nginx-port.
func newPortHolder(ctx *pulumi.Context, n names, svc service, image pulumi.StringInput, nets map[string]*docker.Network, on []pulumi.ResourceOption) (*portHolder, error) {
	name := n.of(svc.role, "port")
	args := hardened(&docker.ContainerArgs{
		Name:  pulumi.String(name),
		Image: image,
		// Any image with sleep will do: the service's, as it was when the
		// holder was made (the image is ignored after that).
		Entrypoints:      pulumi.StringArray{pulumi.String("sleep")},
		Command:          pulumi.StringArray{pulumi.String("infinity")},
		Sysctls:          pulumi.StringMap{migrateSysctl: pulumi.String("1")},
		NetworksAdvanced: attachments(svc, nets),
		Ports:            ports(svc),
		// sleep, as PID 1, ignores SIGTERM; it has nothing to finish.
		StopSignal: pulumi.String("SIGKILL"),
		Labels:     containerLabels(n.labels(svc.role + "-port")),
		Cpus:       pulumi.String(holderCpus),
	}, holderMemoryMB)
	if svc.user != "" {
		args.User = pulumi.String(svc.user)
	}
	args.Wait = pulumi.Bool(false) // no health check: sleep has nothing to check
	c, err := docker.NewContainer(ctx, name, args, append(on,
		// A fixed name and the host's port: the old goes first.
		pulumi.DeleteBeforeReplace(true),
		pulumi.IgnoreChanges([]string{"image"}),
		// Stacks deployed before the holder had the service itself
		// publish the port, as a container of this resource's old name:
		// updating one replaces that container with the holder, once.
		pulumi.Aliases([]pulumi.Alias{{Name: pulumi.String(n.of(svc.role))}}),
	)...)
	if err != nil {
		return nil, err
	}
	return &portHolder{container: c}, nil
}

// join puts a container in the holder's network namespace: its networks,
// its published port, its DNS.
func (h *portHolder) join(args *docker.ContainerArgs) {
	args.NetworkMode = pulumi.Sprintf("container:%s", h.container.ID())
	args.NetworksAdvanced = nil
}
