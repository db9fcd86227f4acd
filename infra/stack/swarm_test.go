package stack

import (
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"testing"
)

const (
	serviceType = "docker:index/service:Service"
	secretType  = "docker:index/secret:Secret"
)

func swarmConfig(kv ...string) map[string]string {
	return with(testConfig(), append([]string{"tally:target", "swarm", "tally:registry", "registry.example.com/team"}, kv...)...)
}

func TestSwarmStackShape(t *testing.T) {
	r := mustRun(t, "prod", swarmConfig("tally:replicas", "5"))
	if n := len(r.byType(containerType)); n != 0 {
		t.Errorf("a swarm stack declares %d containers; want services only", n)
	}
	want := 0
	for _, svc := range services(Config{Target: "swarm", RedisReplicas: defaultSwarmRedisReplicas}, Files{}) {
		want++
		if svc.reloads != nil {
			want++ // its release service
		}
	}
	if n := len(r.byType(serviceType)); n != want {
		t.Fatalf("%d services, want %d: one per service of the list, and a release service per service that reloads", n, want)
	}
	for _, res := range r.byType(networkType) {
		net := decode[networkInputs](t, res)
		if net.Driver != "overlay" {
			t.Errorf("network %s: driver %q, want overlay", res.name, net.Driver)
		}
		if net.Internal != (res.name == "tally-prod-backend") {
			t.Errorf("network %s: internal = %v", res.name, net.Internal)
		}
	}

	web := decode[serviceInputs](t, r.named("tally-prod-web"))
	redis := decode[serviceInputs](t, r.named("tally-prod-redis"))
	nginx := decode[serviceInputs](t, r.named("tally-prod-nginx"))
	if got := web.Mode.Replicated.Replicas; got != 5 {
		t.Errorf("web replicas = %v, want 5", got)
	}
	if !nginx.Mode.Global {
		t.Errorf("nginx is not global (one on every manager)")
	}
	for svc, want := range map[*serviceInputs]string{&redis: "node.labels.tally.redis==true", &nginx: "node.role==manager"} {
		if got := svc.TaskSpec.Placement.Constraints; !slices.Equal(got, []string{want}) {
			t.Errorf("%s placed by %v, want %s", svc.Name, got, want)
		}
	}
	// No IPVS needed: DNS round-robin everywhere, nginx's port on its node.
	for _, svc := range []serviceInputs{web, redis, nginx} {
		if svc.EndpointSpec.Mode != "dnsrr" {
			t.Errorf("%s: endpoint mode %q, want dnsrr", svc.Name, svc.EndpointSpec.Mode)
		}
	}
	if ports := nginx.EndpointSpec.Ports; len(ports) != 1 || ports[0].PublishMode != "host" {
		t.Errorf("nginx's ports = %v, want one in host mode", ports)
	}
	if upd := web.UpdateConfig; upd.Order != "start-first" || upd.FailureAction != "rollback" {
		t.Errorf("web's update config = %v, want start-first with rollback", upd)
	}
	if cpus := web.TaskSpec.Resources.Limits.NanoCpus; cpus != 1e9 {
		t.Errorf("web's CPU limit = %v nano-CPUs, want one CPU (Go sets GOMAXPROCS from it)", cpus)
	}
	if redis.UpdateConfig.Order != "stop-first" {
		t.Errorf("Redis must stop before a new task takes its volume")
	}
	// Networks by ID: by name the provider replaces the service each time.
	for _, n := range web.TaskSpec.NetworksAdvanceds {
		if !strings.HasSuffix(n.Name, "-id") {
			t.Errorf("web joins network %q, want a network's ID", n.Name)
		}
	}
}

func TestEveryServiceIsHardened(t *testing.T) {
	r := mustRun(t, "prod", swarmConfig())
	expectHardened(t, servicesRunning(t, r), func(name string) bool { return name == "tally-prod-web" })
}

// The password reaches the services as a Swarm secret, encrypted in state
// and named by Pulumi, so a new password is a new secret created before
// the services move to it.
func TestSwarmPasswordIsASecret(t *testing.T) {
	pw := testConfig()["tally:redisPassword"]
	r := mustRun(t, "prod", swarmConfig())
	secrets := r.byType(secretType)
	if len(secrets) != 1 {
		t.Fatalf("%d secrets, want 1", len(secrets))
	}
	s := secrets[0]
	data := s.inputs["data"]
	if !data.ContainsSecrets() {
		t.Errorf("the secret's data is not a Pulumi secret")
	}
	for data.IsSecret() {
		data = data.SecretValue().Element
	}
	if b, _ := base64.StdEncoding.DecodeString(data.StringValue()); string(b) != pw {
		t.Errorf("the secret holds %q, want the password", b)
	}
	if name := decode[struct{ Name string }](t, s).Name; name != "" {
		t.Errorf("the secret is named %q; a fixed name cannot be replaced create-first", name)
	}
	if !s.deleteBeforeSet || s.deleteBefore {
		t.Errorf("the secret must be created before the old one is deleted")
	}
	for _, svc := range r.byType(serviceType) {
		if strings.Contains(fmt.Sprint(svc.inputs), pw) {
			t.Errorf("%s's inputs hold the password", svc.name)
		}
	}
}
