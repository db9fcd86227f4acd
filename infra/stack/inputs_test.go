package stack

import (
	"slices"
	"strconv"
	"strings"
	"testing"
)

// cpus reads a container's CPU limit as the program writes it ("1.0").
func cpus(s string) float64 { n, _ := strconv.ParseFloat(s, 64); return n }

// The inputs the tests read, per resource type, as decode fills them.

type label struct{ Label, Value string }

type attached struct {
	Name    string
	Aliases []string
}

type healthInputs struct {
	Tests   []string
	Retries int
}

type containerInputs struct {
	Name, Image, User, Cpus, StopSignal string
	NetworkMode                         string
	Command, Entrypoints, Envs          []string
	SecurityOpts                        []string
	ReadOnly, Wait, Attach              bool
	Start                               *bool
	Sysctls                             map[string]string
	Uploads                             []struct{ File, Content string }
	Memory, MemorySwap                  int
	Capabilities                        struct{ Drops []string }
	Healthcheck                         *healthInputs
	NetworksAdvanced                    []attached
	Volumes                             []struct {
		ContainerPath, VolumeName string
		ReadOnly                  bool
	}
	Ports  []struct{ Internal, External int }
	Labels []label
}

type serviceInputs struct {
	Name string
	Mode struct {
		Global     bool
		Replicated struct{ Replicas int }
	}
	TaskSpec struct {
		ContainerSpec struct {
			Image, User string
			Commands    []string
			Args        []string
			Env         map[string]string
			Labels      []struct{ Label, Value string }
			ReadOnly    bool
			CapDrops    []string
			Healthcheck *healthInputs
			Secrets     []struct{ SecretId, FileName string }
			Mounts      []struct {
				Type, Source, Target string
				ReadOnly             bool
			}
		}
		Resources struct {
			Limits struct{ MemoryBytes, NanoCpus int }
		}
		Placement         struct{ Constraints []string }
		NetworksAdvanceds []attached
	}
	EndpointSpec struct {
		Mode  string
		Ports []struct {
			PublishMode               string
			PublishedPort, TargetPort int
		}
	}
	UpdateConfig struct{ Order, FailureAction string }
}

type networkInputs struct {
	Name, Driver string
	Internal     bool
}

// running is what the hardening rules look at in a container or a Swarm
// task, whichever target declared it.
type running struct {
	name     string
	user     string
	readOnly bool
	capDrops []string
	// noNewPrivileges is nil where the target cannot set it (the provider
	// has no such setting for Swarm services).
	noNewPrivileges *bool
	// A health check waited for; or, where there is nothing to check, the
	// reason: a run waited for to its end (the release step), or sleep
	// holding a network namespace (the port holder).
	health   bool
	memoryMB int
	cpus     float64
	started  bool // false: created and never started (the password file's holder)
}

func containersRunning(t *testing.T, r run) []running {
	var out []running
	for _, res := range r.byType(containerType) {
		c := decode[containerInputs](t, res)
		nnp := slices.Equal(c.SecurityOpts, []string{noNewPrivileges})
		out = append(out, running{
			name: res.name, user: c.User, readOnly: c.ReadOnly, capDrops: c.Capabilities.Drops,
			noNewPrivileges: &nnp, memoryMB: c.Memory, cpus: cpus(c.Cpus),
			health:  c.Wait && c.Healthcheck != nil || c.Attach || slices.Equal(c.Entrypoints, []string{"sleep"}),
			started: c.Start == nil || *c.Start,
		})
	}
	return out
}

func servicesRunning(t *testing.T, r run) []running {
	var out []running
	for _, res := range r.byType(serviceType) {
		s := decode[serviceInputs](t, res)
		spec := s.TaskSpec.ContainerSpec
		out = append(out, running{
			name: res.name, user: spec.User, readOnly: spec.ReadOnly, capDrops: spec.CapDrops,
			health: spec.Healthcheck != nil, memoryMB: s.TaskSpec.Resources.Limits.MemoryBytes >> 20,
			cpus: float64(s.TaskSpec.Resources.Limits.NanoCpus) / 1e9, started: true,
		})
	}
	return out
}

// expectHardened holds every container or task to the stack's rules: a
// read-only root (but for a holder that never starts), no capabilities, no
// privilege gain where the target can say so, a health check waited for,
// memory and CPU limits, and no root user (builtImage's sets its own, see
// TestAppImageIsNotRoot).
func expectHardened(t *testing.T, all []running, builtByRepo func(name string) bool) {
	t.Helper()
	for _, c := range all {
		if c.started && !c.readOnly {
			t.Errorf("%s: root filesystem not read-only", c.name)
		}
		if !slices.Equal(c.capDrops, []string{dropAll}) {
			t.Errorf("%s: capabilities dropped = %v, want ALL", c.name, c.capDrops)
		}
		if c.noNewPrivileges != nil && !*c.noNewPrivileges {
			t.Errorf("%s: no-new-privileges not set", c.name)
		}
		if c.started && !c.health {
			t.Errorf("%s: no health check waited for", c.name)
		}
		if c.memoryMB <= 0 {
			t.Errorf("%s: no memory limit", c.name)
		}
		if c.started && c.cpus <= 0 {
			t.Errorf("%s: no CPU limit", c.name)
		}
		u := c.user
		if !builtByRepo(c.name) && (u == "" || u == "0" || strings.HasPrefix(u, "root") || strings.HasPrefix(u, "0:")) {
			t.Errorf("%s: runs as %q", c.name, u)
		}
	}
}
