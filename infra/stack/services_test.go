package stack

import (
	"slices"
	"strings"
	"testing"
)

// extra is a service no target has heard of, added to the list as a
// change to services() would add it.
func extra(svcs []service) []service {
	return append(svcs, service{
		role:     "extra",
		image:    image{ref: "example.com/extra:1", pin: true},
		replicas: 2, replace: startFirst,
		placement: "node.labels.tally.extra==true",
		waitsFor:  []string{redisRole},
		user:      "1000:1000",
		env:       []string{"EXTRA=1"},
		health:    []string{"CMD", "/extra", "health"}, retries: 2,
		memoryMB: 32, cpus: 1, stopGrace: 5,
		password: true,
		networks: []attachment{{backend, "extra"}},
	})
}

// A service added to the list comes out on both targets with every trait
// it was given and every rule the stack holds to, written nowhere but in
// the list.
func TestAServiceAddedToTheListRunsOnBothTargets(t *testing.T) {
	t.Run("docker", func(t *testing.T) {
		r, err := runServices(t, "dev", testConfig(), repoFiles(t), extra)
		if err != nil {
			t.Fatal(err)
		}
		var found []recorded
		for _, res := range r.byType(containerType) {
			if strings.HasPrefix(res.name, "tally-dev-extra-") {
				found = append(found, res)
			}
		}
		if len(found) != 2 {
			t.Fatalf("%d containers of the new service, want its 2 replicas", len(found))
		}
		expectHardened(t, containersRunning(t, r), func(name string) bool { return strings.HasPrefix(name, "tally-dev-web") })
		for _, res := range found {
			c := decode[containerInputs](t, res)
			if c.Image != "sha256:tally-dev-extra-image@example.com/extra:1" || c.User != "1000:1000" || c.Memory != 32 {
				t.Errorf("%s: image %q, user %q, memory %d", res.name, c.Image, c.User, c.Memory)
			}
			if len(c.NetworksAdvanced) != 1 || c.NetworksAdvanced[0].Name != "tally-dev-backend" || !slices.Equal(c.NetworksAdvanced[0].Aliases, []string{"extra"}) {
				t.Errorf("%s: networks %v, want backend as extra", res.name, c.NetworksAdvanced)
			}
			if len(c.Volumes) != 1 || c.Volumes[0].ContainerPath != secretsDir || !c.Volumes[0].ReadOnly {
				t.Errorf("%s: volumes %v, want the password file's, read-only", res.name, c.Volumes)
			}
			if c.Name != "" || !res.deleteBeforeSet || res.deleteBefore {
				t.Errorf("%s: named %q, delete-before-replace %v: want start-first", res.name, c.Name, res.deleteBefore)
			}
			expectDependsOn(t, res, "tally-dev-redis", "tally-dev-secrets-holder")
		}
	})
	t.Run("swarm", func(t *testing.T) {
		r, err := runServices(t, "prod", swarmConfig(), repoFiles(t), extra)
		if err != nil {
			t.Fatal(err)
		}
		res := r.named("tally-prod-extra")
		if res.typ != serviceType {
			t.Fatalf("no Swarm service for the new service")
		}
		expectHardened(t, servicesRunning(t, r), func(name string) bool { return name == "tally-prod-web" })
		s := decode[serviceInputs](t, res)
		spec := s.TaskSpec.ContainerSpec
		if s.Mode.Replicated.Replicas != 2 || s.UpdateConfig.Order != "start-first" {
			t.Errorf("mode %+v, update %+v: want 2 replicas, start-first", s.Mode, s.UpdateConfig)
		}
		if !slices.Equal(s.TaskSpec.Placement.Constraints, []string{"node.labels.tally.extra==true"}) {
			t.Errorf("placed by %v", s.TaskSpec.Placement.Constraints)
		}
		if spec.Image != "example.com/extra:1" || spec.User != "1000:1000" {
			t.Errorf("image %q (no digest under mocks), user %q", spec.Image, spec.User)
		}
		if len(spec.Secrets) != 1 || spec.Secrets[0].FileName != passwordPath {
			t.Errorf("secrets %v, want the password at %s", spec.Secrets, passwordPath)
		}
		expectDependsOn(t, res, "tally-prod-redis")
	})
}

// A list no target could run is refused before anything is declared.
func TestAServiceListThatCannotRunIsRefused(t *testing.T) {
	for _, tc := range []struct {
		edit func([]service) []service
		want string
	}{
		{func(s []service) []service {
			return append(s, service{role: "early", replicas: 1, waitsFor: []string{"later"}})
		}, `waits for "later"`},
		{func(s []service) []service { return append(s, s[0]) }, "two services have the role"},
		{func(s []service) []service { s[0].replicas = 0; return s }, "0 replicas"},
		{func(s []service) []service { s[0].replicas = 2; return s }, "share one container name"},
		{func(s []service) []service { s[1].cpus = 0; return s }, "a memory and a CPU limit"},
		{func(s []service) []service { s = s[1:]; s[0].waitsFor = nil; return s }, "no redis service"},
		{func(s []service) []service { s[0].dataDir = ""; return s }, "no data volume"},
	} {
		if _, err := runServices(t, "dev", testConfig(), repoFiles(t), tc.edit); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want one saying %q", err, tc.want)
		}
	}
}

func expectDependsOn(t *testing.T, res recorded, names ...string) {
	t.Helper()
	for _, name := range names {
		if !slices.ContainsFunc(res.dependsOn, func(urn string) bool { return strings.HasSuffix(urn, "::"+name) }) {
			t.Errorf("%s does not wait for %s: depends on %v", res.name, name, res.dependsOn)
		}
	}
}
