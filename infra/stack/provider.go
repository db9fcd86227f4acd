package stack

import (
	"maps"
	"slices"

	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// What both targets declare through the docker provider the same way: the
// provider itself, the networks, the settings every container or task
// gets, and labels.

// How much each container logs before the oldest is dropped.
const (
	logDriver   = "json-file"
	logMaxSize  = "10m"
	logMaxFiles = "3"
)

// Check intervals and timeouts of every health check.
const (
	healthInterval    = "2s"
	healthTimeout     = "2s"
	healthStartPeriod = "5s"
)

// What every container and task runs with: no capabilities and, where the
// target can say so, no privilege gain; a writable /tmp in memory.
const (
	dropAll         = "ALL"
	noNewPrivileges = "no-new-privileges:true"
	tmpDir          = "/tmp"
)

func logOptions() pulumi.StringMap {
	return pulumi.StringMap{"max-size": pulumi.String(logMaxSize), "max-file": pulumi.String(logMaxFiles)}
}

// base is what a target declares before its services: the stack's
// component, the docker provider for the engine cfg names, and the
// networks.
type base struct {
	n    names
	on   []pulumi.ResourceOption // for every resource: the component as parent, the provider
	nets map[string]*docker.Network
}

// newBase registers s as the stack's component of type typ, with its
// provider and its networks of driver (bridge on one engine, overlay on a
// swarm).
func newBase(ctx *pulumi.Context, typ, name string, s pulumi.ComponentResource, cfg Config, driver string, opts ...pulumi.ResourceOption) (base, error) {
	if err := ctx.RegisterComponentResource(typ, name, s, opts...); err != nil {
		return base{}, err
	}
	b := base{n: namesFor(ctx)}
	provider, err := docker.NewProvider(ctx, b.n.of("docker"), providerArgs(cfg), pulumi.Parent(s))
	if err != nil {
		return base{}, err
	}
	b.on = []pulumi.ResourceOption{pulumi.Parent(s), pulumi.Provider(provider)}
	b.nets, err = networks(ctx, b.n, driver, b.on)
	return b, err
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

// waitedFor are the resources of the services svc waits for, by role.
func waitedFor[R pulumi.Resource](svc service, declared map[string][]R) pulumi.ResourceOption {
	var deps []pulumi.Resource
	for _, role := range svc.waitsFor {
		for _, r := range declared[role] {
			deps = append(deps, r)
		}
	}
	return pulumi.DependsOn(deps)
}

// Docker labels in key order, in the list type each pulumi-docker resource
// takes.
func networkLabels(m map[string]string) docker.NetworkLabelArray {
	return labelList(m, func(k, v pulumi.String) docker.NetworkLabelInput {
		return docker.NetworkLabelArgs{Label: k, Value: v}
	})
}

func labelList[E any](m map[string]string, label func(k, v pulumi.String) E) []E {
	var out []E
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, label(pulumi.String(k), pulumi.String(m[k])))
	}
	return out
}
