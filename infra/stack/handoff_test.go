package stack

import (
	"maps"
	"path"
	"slices"
	"strings"
	"testing"
)

// nginx on one engine: the port is its holder's, which runs sleep with
// tcp_migrate_req on and is replaced stop-first (and was nginx itself in
// stacks deployed before it); nginx runs in the holder's namespace, is
// replaced start-first, and reads its config releases read-only.
func TestNginxRunsInItsPortHoldersNamespace(t *testing.T) {
	r := mustRun(t, "dev", testConfig())
	holder := r.named("tally-dev-nginx-port")
	h := decode[containerInputs](t, holder)
	if h.Name != "tally-dev-nginx-port" || !slices.Equal(h.Entrypoints, []string{"sleep"}) || h.Sysctls[migrateSysctl] != "1" {
		t.Errorf("port holder: name %q, entrypoint %v, sysctls %v", h.Name, h.Entrypoints, h.Sysctls)
	}
	if len(h.Ports) != 1 || h.Ports[0].External != 8080 || len(h.NetworksAdvanced) != 1 || h.NetworksAdvanced[0].Name != "tally-dev-frontend" {
		t.Errorf("port holder: ports %v, networks %v; want 8080 on the frontend network", h.Ports, h.NetworksAdvanced)
	}
	if !holder.deleteBeforeSet || !holder.deleteBefore {
		t.Error("the port holder is not replaced stop-first (it has a fixed name and the host's port)")
	}

	nginx := r.named("tally-dev-nginx-1")
	n := decode[containerInputs](t, nginx)
	if n.NetworkMode != "container:tally-dev-nginx-port-id" || len(n.NetworksAdvanced) != 0 || len(n.Ports) != 0 {
		t.Errorf("nginx: network mode %q, networks %v, ports %v; want only the holder's namespace", n.NetworkMode, n.NetworksAdvanced, n.Ports)
	}
	if n.Name != "" || !nginx.deleteBeforeSet || nginx.deleteBefore {
		t.Errorf("nginx: named %q, delete-before-replace %v; want start-first, no fixed name", n.Name, nginx.deleteBefore)
	}
	if !slices.ContainsFunc(n.Volumes, func(v struct {
		ContainerPath, VolumeName string
		ReadOnly                  bool
	}) bool {
		return v.VolumeName == "tally-dev-nginx-conf" && v.ContainerPath == releases && v.ReadOnly
	}) {
		t.Errorf("nginx volumes = %v, want tally-dev-nginx-conf read-only at %s", n.Volumes, releases)
	}
	if !slices.Contains(nginx.dependsOn, "urn:pulumi:dev::tally::tally:docker:Stack$docker:index/container:Container::tally-dev-nginx-release") {
		t.Errorf("nginx does not wait for its config release: depends on %v", nginx.dependsOn)
	}
}

// A config release: the files go into the volume under their content's
// id, through a holder never started, and the release step runs once,
// where nginx runs, waited for.
func TestNginxConfigIsARelease(t *testing.T) {
	r := mustRun(t, "dev", testConfig())
	step := r.named("tally-dev-nginx-release")
	s := decode[containerInputs](t, step)
	svc, _ := byRole(services(Config{PlainHTTP: true}, repoFiles(t)), nginxRole)
	id := svc.reloads.id()
	var files []string
	for _, u := range decode[containerInputs](t, r.named("tally-dev-nginx-conf-files")).Uploads {
		files = append(files, u.File)
	}
	slices.Sort(files)
	var want []string
	for _, name := range slices.Sorted(maps.Keys(svc.reloads.files)) {
		want = append(want, path.Join(releases, id, name))
	}
	if !slices.Equal(files, want) || !slices.Contains(want, path.Join(releases, id, "servers.conf")) {
		t.Errorf("release uploads %v, want %v", files, want)
	}
	if !s.Attach || (s.Start != nil && !*s.Start) || s.NetworkMode != "container:tally-dev-nginx-port-id" || s.Name != "" {
		t.Errorf("release step: attach %v, start %v, network %q, name %q; want one run, waited for, in the holder's namespace, no fixed name", s.Attach, s.Start, s.NetworkMode, s.Name)
	}
	if len(s.Entrypoints) != 5 || s.Entrypoints[4] != id {
		t.Errorf("release step's entrypoint %q, want the release script with id %s", s.Entrypoints, id)
	}
	if got := r.outputs["nginxConfig"]; got != id {
		t.Errorf("nginxConfig output = %v, want %s", got, id)
	}

	// Another config is another release; nothing else about nginx moves.
	files2 := repoFiles(t)
	files2.Nginx["nginx.conf"] += "# changed\n"
	r2, err := runProgram(t, "dev", testConfig(), files2)
	if err != nil {
		t.Fatal(err)
	}
	if id2 := r2.outputs["nginxConfig"]; id2 == id {
		t.Error("a changed nginx.conf has the same release id")
	}
	for _, name := range []string{"tally-dev-nginx-1", "tally-dev-nginx-port"} {
		if a, b := decode[containerInputs](t, r.named(name)), decode[containerInputs](t, r2.named(name)); !slices.Equal(a.Entrypoints, b.Entrypoints) || !slices.Equal(a.Envs, b.Envs) || len(a.Uploads)+len(b.Uploads) > 0 {
			t.Errorf("%s changes with nginx's config", name)
		}
	}
}

// A release the service refuses fails the program with what it said.
func TestARefusedReleaseFailsTheDeploy(t *testing.T) {
	m := &mocks{runs: map[string]ran{"tally-dev-nginx-release": {exit: 1, logs: `nginx: [emerg] unknown directive "bogus"`}}}
	_, err := runWith(t, m, "dev", testConfig(), repoFiles(t), nil)
	if err == nil || !strings.Contains(err.Error(), `unknown directive "bogus"`) || !strings.Contains(err.Error(), "refused its config") {
		t.Errorf("program with a refused release: %v; want nginx's reason", err)
	}
}

// On a swarm nginx's tasks stop first (a service's tasks cannot share a
// network namespace), and a config change updates the release service
// alone: nginx's own spec does not hold the config.
func TestSwarmNginxReloadsFromItsReleaseService(t *testing.T) {
	cfg := swarmConfig()
	r := mustRun(t, "prod", cfg)
	nginx := decode[serviceInputs](t, r.named("tally-prod-nginx"))
	if nginx.UpdateConfig.Order != "stop-first" {
		t.Errorf("swarm nginx update order %q, want stop-first", nginx.UpdateConfig.Order)
	}
	conf := decode[serviceInputs](t, r.named("tally-prod-nginx-conf"))
	if !conf.Mode.Global || !slices.Equal(conf.TaskSpec.Placement.Constraints, nginx.TaskSpec.Placement.Constraints) {
		t.Errorf("the release service runs %+v, placed %v; want one on every node nginx runs on", conf.Mode, conf.TaskSpec.Placement.Constraints)
	}
	files := repoFiles(t)
	files.Nginx["upstream.conf"] += "# changed\n"
	r2, err := runProgram(t, "prod", cfg, files)
	if err != nil {
		t.Fatal(err)
	}
	a, b := r.named("tally-prod-nginx").inputs, r2.named("tally-prod-nginx").inputs
	if !a.DeepEquals(b) {
		t.Error("a config change changes nginx's swarm service; want only its release service changed")
	}
	if r.named("tally-prod-nginx-conf").inputs.DeepEquals(r2.named("tally-prod-nginx-conf").inputs) {
		t.Error("a config change leaves the release service as it was")
	}
}
