package tally

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
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
	if n := len(r.byType(serviceType)); n != 3 {
		t.Fatalf("%d services, want web, redis and nginx", n)
	}
	for _, net := range r.byType(networkType) {
		if str(net.inputs, "driver") != "overlay" {
			t.Errorf("network %s: driver %q, want overlay", net.name, str(net.inputs, "driver"))
		}
		if internal := plain(net.inputs["internal"]).BoolValue(); internal != (net.name == "tally-prod-backend") {
			t.Errorf("network %s: internal = %v", net.name, internal)
		}
	}

	web, redis, nginx := r.named("tally-prod-web"), r.named("tally-prod-redis"), r.named("tally-prod-nginx")
	if got := plain(obj(obj(web.inputs, "mode"), "replicated")["replicas"]).NumberValue(); got != 5 {
		t.Errorf("web replicas = %v, want 5", got)
	}
	if !plain(obj(nginx.inputs, "mode")["global"]).BoolValue() {
		t.Errorf("nginx is not global (one on every manager)")
	}
	for svc, want := range map[*recorded]string{&redis: "node.labels.tally.redis==true", &nginx: "node.role==manager"} {
		if got := fmt.Sprint(plain(obj(obj(svc.inputs, "taskSpec"), "placement")["constraints"]).ArrayValue()); !strings.Contains(got, want) {
			t.Errorf("%s placed by %s, want %s", svc.name, got, want)
		}
	}
	// No IPVS needed: DNS round-robin everywhere, nginx's port on its node.
	for _, svc := range []recorded{web, redis, nginx} {
		if mode := str(obj(svc.inputs, "endpointSpec"), "mode"); mode != "dnsrr" {
			t.Errorf("%s: endpoint mode %q, want dnsrr", svc.name, mode)
		}
	}
	ports := plain(obj(nginx.inputs, "endpointSpec")["ports"]).ArrayValue()
	if len(ports) != 1 || str(plain(ports[0]).ObjectValue(), "publishMode") != "host" {
		t.Errorf("nginx's ports = %v, want one in host mode", ports)
	}
	if upd := obj(web.inputs, "updateConfig"); str(upd, "order") != "start-first" || str(upd, "failureAction") != "rollback" {
		t.Errorf("web's update config = %v, want start-first with rollback", upd)
	}
	if cpus := plain(obj(obj(obj(web.inputs, "taskSpec"), "resources"), "limits")["nanoCpus"]).NumberValue(); cpus != 1e9 {
		t.Errorf("web's CPU limit = %v nano-CPUs, want one CPU (Go sets GOMAXPROCS from it)", cpus)
	}
	if str(obj(redis.inputs, "updateConfig"), "order") != "stop-first" {
		t.Errorf("Redis must stop before a new task takes its volume")
	}
	// Networks by ID: by name the provider replaces the service each time.
	for _, n := range plain(obj(web.inputs, "taskSpec")["networksAdvanceds"]).ArrayValue() {
		if name := str(plain(n).ObjectValue(), "name"); !strings.HasSuffix(name, "-id") {
			t.Errorf("web joins network %q, want a network's ID", name)
		}
	}
}

func TestEveryServiceIsHardened(t *testing.T) {
	r := mustRun(t, "prod", swarmConfig())
	for _, svc := range r.byType(serviceType) {
		spec := obj(obj(svc.inputs, "taskSpec"), "containerSpec")
		if !plain(spec["readOnly"]).BoolValue() {
			t.Errorf("%s: root filesystem not read-only", svc.name)
		}
		if drops := fmt.Sprint(plain(spec["capDrops"]).ArrayValue()); !strings.Contains(drops, "ALL") {
			t.Errorf("%s: capabilities dropped = %s, want ALL", svc.name, drops)
		}
		if plain(spec["healthcheck"]).IsNull() {
			t.Errorf("%s: no health check", svc.name)
		}
		if plain(obj(obj(svc.inputs, "taskSpec"), "resources")["limits"]).IsNull() {
			t.Errorf("%s: no memory limit", svc.name)
		}
		if u := str(spec, "user"); svc.name != "tally-prod-web" && (u == "" || strings.HasPrefix(u, "0")) {
			t.Errorf("%s: runs as %q", svc.name, u)
		}
	}
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
	if name := s.inputs["name"]; !name.IsNull() && name.StringValue() != "" {
		t.Errorf("the secret is named %q; a fixed name cannot be replaced create-first", name.StringValue())
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

func obj(m resource.PropertyMap, key resource.PropertyKey) resource.PropertyMap {
	v := plain(m[key])
	if !v.IsObject() {
		return resource.PropertyMap{}
	}
	return v.ObjectValue()
}
