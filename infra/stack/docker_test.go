package stack

import (
	"cmp"
	"fmt"
	"os"
	"path"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
)

func containerNames(r run) []string {
	var names []string
	for _, c := range r.byType(containerType) {
		names = append(names, c.name)
	}
	sort.Strings(names)
	return names
}

func TestResourcesPerReplicaCount(t *testing.T) {
	for _, replicas := range []int{1, 3, 5} {
		config := with(testConfig(), "tally:replicas", strconv.Itoa(replicas))
		r := mustRun(t, "dev", config)
		// One container per instance of each service, and the holder of
		// the password file; a data volume per service that has data, and
		// the password file's; a port holder per handoff service; a config
		// volume and the release step's run per service that reloads.
		containers, volumes := 1, 1
		for _, svc := range services(Config{Replicas: replicas}, Files{}) {
			containers += max(svc.replicas, 1)
			if svc.dataDir != "" {
				volumes++
			}
			if svc.replace == handoff {
				containers++
			}
			if svc.reloads != nil {
				containers += 2 // the release's files, the release step
				volumes++
			}
		}
		webs := 0
		for _, c := range r.byType(containerType) {
			if strings.HasPrefix(c.name, "tally-dev-web-") {
				webs++
			}
		}
		if webs != replicas {
			t.Errorf("replicas=%d: %d web containers", replicas, webs)
		}
		if n := len(r.byType(containerType)); n != containers {
			t.Errorf("replicas=%d: %d containers, want %d", replicas, n, containers)
		}
		if n, v := len(r.byType(networkType)), len(r.byType(volumeType)); n != 2 || v != volumes {
			t.Errorf("replicas=%d: %d networks and %d volumes, want 2 and %d", replicas, n, v, volumes)
		}
		if got, _ := r.outputs["webContainers"].([]string); len(got) != webs {
			t.Errorf("webContainers output = %v", got)
		}
	}
}

// Scaling 3→5 must add exactly two web containers and leave every other
// resource's inputs as they were, nginx above all.
func TestScalingAddsOnlyWebContainers(t *testing.T) {
	three := mustRun(t, "dev", with(testConfig(), "tally:replicas", "3"))
	five := mustRun(t, "dev", with(testConfig(), "tally:replicas", "5"))
	before := map[string]resource.PropertyMap{}
	for _, res := range three.resources {
		before[res.name] = res.inputs
	}
	var added []string
	for _, res := range five.resources {
		old, ok := before[res.name]
		if !ok {
			added = append(added, res.name)
			continue
		}
		if !reflect.DeepEqual(old.Mappable(), res.inputs.Mappable()) {
			t.Errorf("scaling changed the inputs of %s", res.name)
		}
	}
	sort.Strings(added)
	if want := []string{"tally-dev-web-4", "tally-dev-web-5"}; !reflect.DeepEqual(added, want) {
		t.Errorf("scaling 3→5 added %v, want %v", added, want)
	}
}

// A new app build replaces the web containers and nothing else. The real
// provider asks for delete-before-replace on every container, so the
// replicas must say otherwise, and must leave their Docker names to Pulumi,
// which gives a replacement a new one: only then can the new replica start
// beside the old. (That the rollout then serves throughout is shown by
// TestDeployToLocalEngine against the real provider.)
func TestNewAppImageReplacesOnlyWeb(t *testing.T) {
	files := repoFiles(t)
	a, err := runProgram(t, "dev", testConfig(), files)
	if err != nil {
		t.Fatal(err)
	}
	files.AppHash = "ba9876543210"
	b, err := runProgram(t, "dev", testConfig(), files)
	if err != nil {
		t.Fatal(err)
	}
	for _, res := range b.resources {
		old := a.named(res.name)
		changed := !reflect.DeepEqual(old.inputs.Mappable(), res.inputs.Mappable())
		isWeb := strings.HasPrefix(res.name, "tally-dev-web")
		if changed != isWeb {
			t.Errorf("%s changed=%v on a new app image; want only web containers and the image to change", res.name, changed)
		}
		if isWeb && res.typ == containerType {
			if name := decode[containerInputs](t, res).Name; name != "" {
				t.Errorf("%s sets its Docker name %q; a replacement would clash with it", res.name, name)
			}
			if !res.deleteBeforeSet || res.deleteBefore {
				t.Errorf("%s does not say create-before-delete; the provider would stop it before starting the new one", res.name)
			}
		}
	}
}

func TestRedisIsIsolatedAndPersistent(t *testing.T) {
	r := mustRun(t, "dev", testConfig())
	redis := decode[containerInputs](t, r.named("tally-dev-redis"))
	if len(redis.Ports) > 0 {
		t.Errorf("Redis publishes ports: %v", redis.Ports)
	}
	if len(redis.NetworksAdvanced) != 1 || redis.NetworksAdvanced[0].Name != "tally-dev-backend" {
		t.Errorf("Redis networks = %v, want only tally-dev-backend", redis.NetworksAdvanced)
	}
	mounts := map[string]string{}
	for _, v := range redis.Volumes {
		mounts[v.ContainerPath] = v.VolumeName
	}
	if want := map[string]string{"/data": "tally-dev-redis-data", "/run/secrets": "tally-dev-secrets"}; !reflect.DeepEqual(mounts, want) {
		t.Errorf("Redis volumes = %v, want %v", mounts, want)
	}
	if !decode[networkInputs](t, r.named("tally-dev-backend")).Internal {
		t.Error("the backend network is not internal")
	}
	// nginx runs in its port holder's network namespace.
	for _, n := range decode[containerInputs](t, r.named("tally-dev-nginx-port")).NetworksAdvanced {
		if n.Name == "tally-dev-backend" {
			t.Error("nginx is on the backend network, so it could reach Redis")
		}
	}
	if !r.named("tally-dev-redis-data").retainOnDelete {
		t.Error("the Redis volume is not retained on destroy by default")
	}
	if r := mustRun(t, "dev", with(testConfig(), "tally:retainData", "false")); r.named("tally-dev-redis-data").retainOnDelete {
		t.Error("retainData=false still retains the volume")
	}
}

func TestEveryContainerIsHardened(t *testing.T) {
	r := mustRun(t, "dev", testConfig())
	all := containersRunning(t, r)
	expectHardened(t, all, func(name string) bool { return strings.HasPrefix(name, "tally-dev-web") })
	for _, c := range all {
		// The holders of the password file and of nginx's config
		// release are created and never started: their roots are
		// writable, for the provider's uploads.
		if c.started == (c.name == "tally-dev-secrets-holder" || c.name == "tally-dev-nginx-conf-files") {
			t.Errorf("%s: started = %v", c.name, c.started)
		}
	}
	for _, res := range r.byType(containerType) {
		if c := decode[containerInputs](t, res); strings.HasPrefix(res.name, "tally-dev-web") && c.Cpus != "1.0" {
			t.Errorf("%s: CPU limit %q, want 1 (Go sets GOMAXPROCS from it)", res.name, c.Cpus)
		}
	}
}

// The app image sets its own non-root user; the program runs it as is.
func TestAppImageIsNotRoot(t *testing.T) {
	df, err := os.ReadFile("../../Dockerfile")
	if err != nil || !strings.Contains(string(df), "\nUSER 65532:65532\n") {
		t.Errorf("the app image does not set a non-root USER")
	}
}

// The password must be a secret wherever it appears: in resource inputs
// (so encrypted in state) and never in an output.
func TestPasswordStaysSecret(t *testing.T) {
	pw := testConfig()["tally:redisPassword"]
	r := mustRun(t, "dev", testConfig())
	if seen := expectSecretOnly(t, r, "the Redis password", pw); seen != 1 { // the upload into the holder of the password file
		t.Errorf("the password reached %d places, want 1: the file's holder", seen)
	}
	if s := fmt.Sprint(Secret(pw)); strings.Contains(s, pw) {
		t.Errorf("a Secret prints as %q", s)
	}
}

// expectSecretOnly fails t wherever value is in r's inputs in plain text,
// in an environment, command or entrypoint (which docker inspect shows),
// or in an output, and returns in how many inputs it is.
func expectSecretOnly(t *testing.T, r run, what, value string) int {
	t.Helper()
	seen := 0
	var walk func(where string, v resource.PropertyValue, secret bool)
	walk = func(where string, v resource.PropertyValue, secret bool) {
		switch {
		case v.IsSecret():
			walk(where, v.SecretValue().Element, true)
		case v.IsOutput():
			walk(where, v.OutputValue().Element, secret || v.OutputValue().Secret)
		case v.IsArray():
			for _, e := range v.ArrayValue() {
				walk(where, e, secret)
			}
		case v.IsObject():
			for k, e := range v.ObjectValue() {
				walk(where+"."+string(k), e, secret)
			}
		case v.IsString() && strings.Contains(v.StringValue(), value):
			seen++
			if !secret {
				t.Errorf("%s is in plain text in %s", what, where)
			}
			if strings.Contains(where, ".envs") || strings.Contains(where, ".command") || strings.Contains(where, ".entrypoints") || strings.Contains(where, ".env.") {
				t.Errorf("%s is in %s, which docker inspect shows; give it as a file", what, where)
			}
		}
	}
	for _, res := range r.resources {
		walk(res.name, resource.NewObjectProperty(res.inputs), false)
	}
	for k, v := range r.outputs {
		if strings.Contains(fmt.Sprint(v), value) {
			t.Errorf("output %s holds %s", k, what)
		}
	}
	return seen
}

func TestNamesDependOnTheStack(t *testing.T) {
	dev, prod := mustRun(t, "dev", testConfig()), mustRun(t, "prod", testConfig())
	// Each Docker object of a stack, by its name: none may share one.
	dockerNames := func(r run) map[string]bool {
		out := map[string]bool{}
		objects := 0
		for _, res := range r.resources {
			if !strings.HasPrefix(res.typ, "docker:index/") || res.typ == "docker:index/remoteImage:RemoteImage" {
				continue
			}
			objects++
			// Objects without a name are named by Pulumi after the resource.
			out[cmp.Or(decode[struct{ Name string }](t, res).Name, res.name)] = true
		}
		if len(out) != objects || objects == 0 {
			t.Errorf("%d Docker objects have %d names: %v", objects, len(out), out)
		}
		return out
	}
	d, p := dockerNames(dev), dockerNames(prod)
	for n := range d {
		if p[n] {
			t.Errorf("stacks dev and prod both name a Docker object %q", n)
		}
		if !strings.HasPrefix(n, "tally-dev-") {
			t.Errorf("Docker name %q is not prefixed by project and stack", n)
		}
	}
	got := map[string]string{}
	for _, l := range decode[containerInputs](t, dev.named("tally-dev-nginx-1")).Labels {
		got[l.Label] = l.Value
	}
	if want := map[string]string{"tally.project": "tally", "tally.stack": "dev", "tally.role": "nginx"}; !reflect.DeepEqual(got, want) {
		t.Errorf("nginx labels = %v, want %v", got, want)
	}
}

// Compose mounts nginx/ and redis/start.sh; the Pulumi program must run
// the very same files.
func TestSameFilesAsCompose(t *testing.T) {
	r := mustRun(t, "dev", testConfig())
	read := func(p string) string {
		b, err := os.ReadFile("../../" + p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	uploads := map[string]string{}
	for _, u := range decode[containerInputs](t, r.named("tally-dev-nginx-conf-files")).Uploads {
		uploads[path.Base(u.File)] = u.Content
	}
	if uploads["nginx.conf"] != read("nginx/nginx.conf") || uploads["upstream.conf"] != read("nginx/upstream.conf") {
		t.Error("nginx's config release differs from nginx/nginx.conf and nginx/upstream.conf")
	}
	if e := decode[containerInputs](t, r.named("tally-dev-nginx-1")).Entrypoints; len(e) < 3 || e[2] != read("nginx/serve.sh") {
		t.Error("nginx does not run nginx/serve.sh")
	}
	cmd := decode[containerInputs](t, r.named("tally-dev-redis")).Command
	if len(cmd) < 3 || cmd[2] != read("redis/start.sh") {
		t.Error("Redis does not run redis/start.sh")
	}
	compose := read("docker-compose.yml")
	for _, mount := range []string{"./nginx:/etc/nginx/tally:ro", "./redis/start.sh:"} {
		if !strings.Contains(compose, mount) {
			t.Errorf("docker-compose.yml no longer mounts %s; keep both deployments on the same files", mount)
		}
	}
}

// The official images are named once, as docker-compose.yml's defaults;
// the program runs them unless its config names others, and the
// Dockerfile's own default builder is the same.
func TestDefaultImagesAreCompose(t *testing.T) {
	files := repoFiles(t)
	if files.Images.Redis == "" || files.Images.Nginx == "" || files.Images.Go == "" {
		t.Fatalf("images read from docker-compose.yml: %+v", files.Images)
	}
	r := mustRun(t, "dev", testConfig())
	imageName := func(name string) string { return decode[struct{ Name string }](t, r.named(name)).Name }
	if got := imageName("tally-dev-redis-image"); got != files.Images.Redis {
		t.Errorf("Redis runs %q, docker-compose.yml says %q", got, files.Images.Redis)
	}
	if got := imageName("tally-dev-nginx-image"); got != files.Images.Nginx {
		t.Errorf("nginx runs %q, docker-compose.yml says %q", got, files.Images.Nginx)
	}
	df, err := os.ReadFile("../../Dockerfile")
	if err != nil || !strings.Contains(string(df), "\nARG GO_IMAGE="+files.Images.Go+"\n") {
		t.Errorf("the Dockerfile's default GO_IMAGE is not docker-compose.yml's %q", files.Images.Go)
	}
	if _, err := composeImages("image: ${REDIS_IMAGE:-redis:8.0}"); err == nil || !strings.Contains(err.Error(), "NGINX_IMAGE") {
		t.Errorf("a compose file without every default: error %v", err)
	}
}

func TestOutputs(t *testing.T) {
	for host, want := range map[string]string{
		"":                            "http://localhost:8080/",
		"unix:///var/run/docker.sock": "http://localhost:8080/",
		"ssh://deploy@example.com":    "http://example.com:8080/",
		"tcp://10.1.2.3:2376":         "http://10.1.2.3:8080/",
	} {
		cfg := testConfig()
		if host != "" {
			cfg = with(cfg, "tally:dockerHost", host)
		}
		r := mustRun(t, "dev", cfg)
		if got := r.outputs["url"]; got != want {
			t.Errorf("dockerHost %q: url = %v, want %s", host, got, want)
		}
	}
	r := mustRun(t, "dev", with(testConfig(), "tally:httpPort", "9090"))
	if r.outputs["url"] != "http://localhost:9090/" || r.outputs["redisVolume"] != "tally-dev-redis-data" {
		t.Errorf("outputs = %v", r.outputs)
	}
	nets, _ := r.outputs["networks"].(map[string]string)
	if nets["frontend"] != "tally-dev-frontend" || nets["backend"] != "tally-dev-backend" {
		t.Errorf("networks output = %v", r.outputs["networks"])
	}
}

// nginx's port is published on every address unless tally:httpBind names one.
func TestHTTPBind(t *testing.T) {
	for bind, want := range map[string]string{"": "", "127.0.0.1": "127.0.0.1", "::1": "::1"} {
		r := mustRun(t, "dev", with(testConfig(), "tally:httpBind", bind))
		ports := decode[struct {
			Ports []struct {
				Ip                 string
				Internal, External int
			}
		}](t, r.named("tally-dev-nginx-port")).Ports
		if len(ports) != 1 || ports[0].Ip != want || ports[0].External != 8080 {
			t.Errorf("httpBind %q: nginx's ports %+v, want 8080 on %q", bind, ports, want)
		}
	}
}

func TestInvalidConfigFailsWithItsReason(t *testing.T) {
	for _, tc := range []struct {
		config map[string]string
		want   string
	}{
		{with(testConfig(), "tally:replicas", "0"), "tally:replicas"},
		{with(testConfig(), "tally:replicas", "51"), "from 1 to 50"},
		{with(testConfig(), "tally:replicas", "three"), "tally:replicas"},
		{with(testConfig(), "tally:httpPort", "70000"), "tally:httpPort"},
		{with(testConfig(), "tally:httpPort", "0"), "from 1 to 65535"},
		{with(testConfig(), "tally:httpBind", "localhost"), "an IP address"},
		{with(testConfig(), "tally:target", "swarm", "tally:registry", "r.example.com", "tally:httpBind", "127.0.0.1"), "cannot be set on a swarm"},
		{map[string]string{}, "tally:redisPassword is not set"},
		{with(testConfig(), "tally:redisPassword", "has space"), "must not contain"},
		{with(testConfig(), "tally:dockerHost", "http://example.com"), "scheme unix://, ssh://, tcp://"},
		{with(testConfig(), "tally:dockerHost", "example.com:2376"), "tally:dockerHost"},
		{with(testConfig(), "tally:dockerHost", "ssh://"), "a host name"},
		{with(testConfig(), "tally:retainData", "maybe"), "true or false"},
		{with(testConfig(), "tally:sshOpts", "-o Foo"), "tally:sshOpts"},
		{with(testConfig(), "tally:certPem", "x"), "set all three"},
		{with(testConfig(), "tally:caPem", "x", "tally:certPem", "y", "tally:keyPem", "z"), "tally:caPem holds no PEM certificate"},
		{with(testConfig(), "tally:caPem", "x", "tally:certPem", "y", "tally:keyPem", "z"), "not a certificate and its key"},
		{with(testConfig(), "tally:platform", "amd64"), "tally:platform"},
		{with(testConfig(), "tally:target", "k8s"), "docker (containers on one engine) or swarm"},
		{with(testConfig(), "tally:target", "swarm"), "needs tally:registry"},
		{with(testConfig(), "tally:target", "swarm", "tally:registry", "r.example.com", "tally:retainData", "false"), "does nothing on a swarm"},
		{with(testConfig(), "tally:target", "swarm", "tally:registry", "https://r.example.com"), "without a scheme"},
	} {
		_, err := runProgram(t, "dev", tc.config, repoFiles(t))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("config %v: error %v, want one mentioning %q", tc.config, err, tc.want)
		}
	}
	// Everything wrong at once is reported at once.
	_, err := runProgram(t, "dev", map[string]string{"tally:replicas": "0", "tally:httpPort": "x"}, repoFiles(t))
	for _, want := range []string{"tally:replicas", "tally:httpPort", "tally:redisPassword"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %s", err, want)
		}
	}
}

func TestSecretsMustBeSetAsSecrets(t *testing.T) {
	_, err := ParseConfig(func(k string) (string, bool) {
		if k == "redisPassword" {
			return "plain-password", true
		}
		return "", false
	}, func(string) bool { return false }, Images{})
	if err == nil || !strings.Contains(err.Error(), "tally:redisPassword is stored in plain text") {
		t.Errorf("a password set without --secret: error %v", err)
	}
}
