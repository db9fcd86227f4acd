package stack

import (
	"encoding/base64"
	"fmt"
	"path"
	"slices"
	"strings"
	"testing"
	"time"

	"tally/testkit"
)

// testCert is a certificate for localhost from a CA of the test's own,
// its chain with the root last, as a user with a private CA gives it.
func testCert(t *testing.T, notBefore, notAfter time.Time) (ca *testkit.CA, chain, key string) {
	t.Helper()
	ca, err := testkit.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	chain, key, err = ca.Issue([]string{"localhost", "127.0.0.1"}, notBefore, notAfter)
	if err != nil {
		t.Fatal(err)
	}
	return ca, chain, key
}

func tlsConfig(t *testing.T, kv ...string) (map[string]string, string) {
	_, chain, key := testCert(t, time.Now().Add(-time.Hour), time.Now().Add(90*24*time.Hour))
	cfg := with(testConfig(), "tally:tlsCert", chain, "tally:tlsKey", key)
	delete(cfg, "tally:plainHTTP")
	return with(cfg, kv...), key
}

func TestCertificateChecks(t *testing.T) {
	hour := time.Hour
	_, good, goodKey := testCert(t, time.Now().Add(-hour), time.Now().Add(90*24*hour))
	_, expired, expiredKey := testCert(t, time.Now().Add(-100*24*hour), time.Now().Add(-24*hour))
	_, other, otherKey := testCert(t, time.Now().Add(-hour), time.Now().Add(90*24*hour))
	leafOnly := good[:strings.Index(good, "-----END CERTIFICATE-----")+len("-----END CERTIFICATE-----\n")]
	for _, c := range []struct {
		name, chain, key, want string
	}{
		{"a good chain, a private root last", good, goodKey, ""},
		{"the key of another certificate", good, otherKey, "is not the key of tally:tlsCert"},
		{"expired", expired, expiredKey, "expired on"},
		{"a chain that does not reach a trusted root", leafOnly, goodKey, "chain does not verify"},
		{"not PEM", "hello", goodKey, "holds no PEM certificate"},
		{"the key in the chain", good + goodKey, goodKey, "holds a PRIVATE KEY block"},
		{"another's chain", other, goodKey, "is not the key"},
	} {
		t.Run(c.name, func(t *testing.T) {
			errs := checkCertificate(c.chain, c.key, time.Now())
			switch {
			case c.want == "" && len(errs) > 0:
				t.Errorf("want no error, got %v", errs)
			case c.want != "" && !strings.Contains(fmt.Sprint(errs), c.want):
				t.Errorf("errors %v, want one saying %q", errs, c.want)
			}
		})
	}
}

// Bad TLS settings fail the preview with what to do.
func TestTLSConfigErrors(t *testing.T) {
	get := func(cfg map[string]string) error {
		_, err := ParseConfig(func(k string) (string, bool) { v, ok := cfg["tally:"+k]; return v, ok },
			func(k string) bool { return k == "redisPassword" || k == "tlsCert" || k == "tlsKey" }, Images{})
		return err
	}
	none := with(testConfig())
	delete(none, "tally:plainHTTP")
	good, key := tlsConfig(t)
	for _, c := range []struct {
		name string
		cfg  map[string]string
		want string
	}{
		{"neither a certificate nor plain HTTP", none, "tally:plainHTTP"},
		{"a certificate and plain HTTP", with(good, "tally:plainHTTP", "true"), "choose one"},
		{"a certificate without its key", with(none, "tally:tlsCert", good["tally:tlsCert"]), "set both"},
		{"plainHTTP not a boolean", with(testConfig(), "tally:plainHTTP", "yes please"), "true or false"},
		{"the same port twice", with(good, "tally:httpsPort", "8080"), "other than tally:httpPort"},
		{"an HTTPS port out of range", with(good, "tally:httpsPort", "70000"), "tally:httpsPort"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := get(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("ParseConfig: %v, want an error saying %q", err, c.want)
			}
		})
	}
	if err := get(good); err != nil {
		t.Errorf("a good certificate: %v", err)
	}
	_, err := ParseConfig(func(k string) (string, bool) { v, ok := good["tally:"+k]; return v, ok },
		func(k string) bool { return k == "redisPassword" }, Images{})
	if err == nil || !strings.Contains(err.Error(), "tally:tlsKey is stored in plain text") {
		t.Errorf("a key not set --secret: %v", err)
	}
	if strings.Contains(fmt.Sprint(err), key) {
		t.Error("the error shows the key")
	}
}

// With a certificate, nginx publishes HTTP and HTTPS, its release holds
// the deployed servers, the certificate and its key (a secret, in no
// environment, output or plain input), and the url is https.
func TestHTTPSOnOneEngine(t *testing.T) {
	cfg, key := tlsConfig(t, "tally:httpsPort", "443")
	r := mustRun(t, "dev", cfg)
	holder := decode[containerInputs](t, r.named("tally-dev-nginx-port"))
	var ports [][2]int
	for _, p := range holder.Ports {
		ports = append(ports, [2]int{p.Internal, p.External})
	}
	if want := [][2]int{{nginxPort, 8080}, {nginxTLSPort, 443}}; !slices.Equal(ports, want) {
		t.Errorf("nginx's holder publishes %v, want %v", ports, want)
	}
	files := map[string]string{}
	for _, u := range decode[containerInputs](t, r.named("tally-dev-nginx-conf-files")).Uploads {
		files[path.Base(path.Dir(u.File))+"/"+path.Base(u.File)] = u.Content
	}
	svc, _ := byRole(services(Config{PlainHTTP: false, HTTPSPort: 443, TLSCert: Secret(cfg["tally:tlsCert"]), TLSKey: Secret(key)}, repoFiles(t)), nginxRole)
	if got := files["tls/key.pem"]; got != key {
		t.Errorf("the release has no tls/key.pem with the key")
	}
	if got := files["tls/cert.pem"]; got != cfg["tally:tlsCert"] {
		t.Errorf("the release has no tls/cert.pem with the chain")
	}
	if got, want := files[svc.reloads.id()+"/servers.conf"], repoFiles(t).Nginx["servers-https.conf"]; got != want {
		t.Errorf("the release's servers.conf is not servers-https.conf")
	}
	if got := files[svc.reloads.id()+"/https-port.conf"]; got != "set $tally_https_port \"\";\n" {
		t.Errorf("https-port.conf = %q, want the redirect to name no port for 443", got)
	}
	if seen := expectSecretOnly(t, r, "the TLS key", key); seen != 1 {
		t.Errorf("the key reached %d places, want 1: the release's files", seen)
	}
	if got := r.outputs["url"]; got != "https://localhost/" {
		t.Errorf("url = %v, want https://localhost/", got)
	}
}

// On a swarm the key reaches the release step as a Swarm secret, which it
// copies into the release; the certificate comes in its environment.
func TestHTTPSOnASwarm(t *testing.T) {
	cfg, key := tlsConfig(t, "tally:target", "swarm", "tally:registry", "registry.example.com/team")
	r := mustRun(t, "prod", cfg)
	conf := decode[serviceInputs](t, r.named("tally-prod-nginx-conf"))
	var files []string
	for _, s := range conf.TaskSpec.ContainerSpec.Secrets {
		files = append(files, s.FileName)
	}
	if want := []string{secretsDir + "/tls_key_pem"}; !slices.Equal(files, want) {
		t.Errorf("the release service mounts secrets %v, want %v", files, want)
	}
	var data string
	for _, s := range r.byType(secretType) {
		if s.name == "tally-prod-nginx-conf-tls_key_pem" {
			if !s.inputs["data"].ContainsSecrets() {
				t.Error("the key's Swarm secret data is not a Pulumi secret")
			}
			data = plain(s.inputs["data"]).StringValue()
		}
	}
	if b, _ := base64.StdEncoding.DecodeString(data); string(b) != key {
		t.Error("no Swarm secret holds the key")
	}
	for _, svc := range r.byType(serviceType) {
		if strings.Contains(fmt.Sprint(svc.inputs), key) {
			t.Errorf("%s's inputs hold the key", svc.name)
		}
	}
	nginx := decode[serviceInputs](t, r.named("tally-prod-nginx"))
	var ports []int
	for _, p := range nginx.EndpointSpec.Ports {
		ports = append(ports, p.PublishedPort)
	}
	if !slices.Equal(ports, []int{8080, 8443}) {
		t.Errorf("swarm nginx publishes %v, want 8080 and 8443", ports)
	}
	// A change of ports alone must reach the tasks (taskLabels); a plain
	// HTTP stack's keep the labels they always had.
	published := func(s serviceInputs) string {
		for _, l := range s.TaskSpec.ContainerSpec.Labels {
			if l.Label == "tally.published" {
				return l.Value
			}
		}
		return ""
	}
	if got := published(nginx); got != "8080:8080 8443:8443" {
		t.Errorf("swarm nginx's tasks are labelled tally.published=%q; want both ports", got)
	}
	plainNginx := decode[serviceInputs](t, mustRun(t, "prod", with(testConfig(), "tally:target", "swarm", "tally:registry", "registry.example.com/team")).named("tally-prod-nginx"))
	if got := published(plainNginx); got != "" {
		t.Errorf("a plain HTTP swarm's nginx is labelled tally.published=%q; want no such label", got)
	}
}

func acmeConfig(kv ...string) map[string]string {
	cfg := with(testConfig(), "tally:domain", "tally.example.com", "tally:acmeEmail", "ops@example.com")
	delete(cfg, "tally:plainHTTP")
	return with(cfg, kv...)
}

// With a domain, a certs service keeps the certificate on a volume of its
// own, kept on destroy like Redis's; nginx reads it there, read-only, and
// its release names it; the challenge path reaches the service by name.
func TestACMEOnOneEngine(t *testing.T) {
	r := mustRun(t, "dev", acmeConfig())
	certs := decode[containerInputs](t, r.named("tally-dev-certs"))
	if !slices.Contains(certs.Command, "tally.example.com") || !slices.Contains(certs.Command, acmeServers["letsencrypt"]) || certs.User != nginxUser {
		t.Errorf("the certs service runs %v as %q; want tally-certs acme for the domain, Let's Encrypt's directory, as nginx's user", certs.Command, certs.User)
	}
	if !slices.ContainsFunc(certs.NetworksAdvanced, func(a attached) bool { return slices.Contains(a.Aliases, certsRole) }) {
		t.Errorf("the certs service is not found as %q on the frontend: %v", certsRole, certs.NetworksAdvanced)
	}
	if v := r.named("tally-dev-certs-data"); !v.retainOnDelete {
		t.Error("the certs volume is not kept on destroy: a new stack would ask for a new certificate")
	}
	for _, name := range []string{"tally-dev-nginx-1", "tally-dev-nginx-release"} {
		c := decode[containerInputs](t, r.named(name))
		if !slices.ContainsFunc(c.Volumes, func(v struct {
			ContainerPath, VolumeName string
			ReadOnly                  bool
		}) bool {
			return v.VolumeName == "tally-dev-certs-data" && v.ContainerPath == acmeDir && v.ReadOnly
		}) {
			t.Errorf("%s does not mount the certs volume read-only at %s: %v", name, acmeDir, c.Volumes)
		}
	}
	svc, _ := byRole(services(Config{Domain: "tally.example.com", HTTPSPort: 8443, ACMEServer: acmeServers["letsencrypt"]}, repoFiles(t)), nginxRole)
	if got := svc.reloads.files["certificate.conf"]; !strings.Contains(got, acmeDir+"/cert.pem") || svc.reloads.secrets != nil {
		t.Errorf("the release's certificate.conf = %q (secrets %v); want the certs volume's pair and no key of its own", got, svc.reloads.secrets)
	}
	if !strings.Contains(svc.reloads.files["servers.conf"], "http://certs:8080") {
		t.Error("the HTTP server does not send the challenge path to the certs service")
	}
	if got := r.outputs["url"]; got != "https://localhost:8443/" {
		t.Errorf("url = %v", got)
	}
}

// On a swarm the keeper stays on Redis's node with its volume and shares
// the pair, sealed with a Swarm secret of the stack's own, with a copy on
// every node nginx runs on; nginx and its release step read the copy's
// volume there. Only the two certs services hold the key.
func TestACMEOnASwarm(t *testing.T) {
	r := mustRun(t, "prod", acmeConfig("tally:target", "swarm", "tally:registry", "registry.example.com/team"))
	type mount = struct {
		Type, Source, Target string
		ReadOnly             bool
	}
	keyed := func(s serviceInputs) bool {
		return slices.ContainsFunc(s.TaskSpec.ContainerSpec.Secrets, func(m struct{ SecretId, FileName string }) bool { return m.FileName == shareKeyPath })
	}
	for _, c := range []struct {
		name, placement string
		global          bool
		args            []string
		volume          mount
	}{
		{"tally-prod-certs", redisConstraint, false, []string{"acme", "-share", ":8081", "-share-key", shareKeyPath}, mount{"volume", "tally-prod-certs-data", acmeDir, false}},
		{"tally-prod-certs-copy", nginxConstraint, true, []string{"copy", "-from", "http://certs:8081/pair", "-share-key", shareKeyPath, "tally.example.com"}, mount{"volume", "tally-prod-certs-copy-data", acmeDir, false}},
	} {
		s := decode[serviceInputs](t, r.named(c.name))
		if s.Mode.Global != c.global || !slices.Equal(s.TaskSpec.Placement.Constraints, []string{c.placement}) {
			t.Errorf("%s: global %v on %v; want global %v on %s", c.name, s.Mode.Global, s.TaskSpec.Placement.Constraints, c.global, c.placement)
		}
		for _, arg := range c.args {
			if !slices.Contains(s.TaskSpec.ContainerSpec.Args, arg) {
				t.Errorf("%s runs %v; want %q in it", c.name, s.TaskSpec.ContainerSpec.Args, arg)
			}
		}
		if !keyed(s) {
			t.Errorf("%s does not read the share key at %s", c.name, shareKeyPath)
		}
		if !slices.Contains(s.TaskSpec.ContainerSpec.Mounts, c.volume) {
			t.Errorf("%s mounts %v; want %v", c.name, s.TaskSpec.ContainerSpec.Mounts, c.volume)
		}
	}
	for _, name := range []string{"tally-prod-nginx", "tally-prod-nginx-conf"} {
		s := decode[serviceInputs](t, r.named(name))
		if want := (mount{"volume", "tally-prod-certs-copy-data", acmeDir, true}); !slices.Contains(s.TaskSpec.ContainerSpec.Mounts, want) {
			t.Errorf("%s mounts %v; want the copy's volume read-only: %v", name, s.TaskSpec.ContainerSpec.Mounts, want)
		}
	}
	for _, name := range []string{"tally-prod-web", "tally-prod-redis", "tally-prod-nginx", "tally-prod-nginx-conf"} {
		if keyed(decode[serviceInputs](t, r.named(name))) {
			t.Errorf("%s reads the share key", name)
		}
	}
	var images []string
	for _, img := range r.byType("docker:index/image:Image") {
		images = append(images, img.name)
	}
	if slices.Sort(images); !slices.Equal(images, []string{"tally-prod-certs-image", "tally-prod-web-image"}) {
		t.Errorf("images built: %v; want the app's and one of the certs target, which both certs services run", images)
	}
	key := r.named("tally-prod-certs-share-key")
	if !key.inputs["data"].ContainsSecrets() || !slices.Contains(key.ignoreChanges, "data") {
		t.Errorf("the share key's data: secret %v, ignored on later runs %v; want both", key.inputs["data"].ContainsSecrets(), key.ignoreChanges)
	}
	b, _ := base64.StdEncoding.DecodeString(plain(key.inputs["data"]).StringValue())
	if len(b) != 64 {
		t.Errorf("the share key is %d bytes; want 32 random ones, in hex", len(b))
	}
	for _, svc := range r.byType(serviceType) {
		if strings.Contains(fmt.Sprint(svc.inputs), string(b)) {
			t.Errorf("%s's inputs hold the share key", svc.name)
		}
	}
}

func TestACMEConfigErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  map[string]string
		want string
	}{
		{"an address for a domain", acmeConfig("tally:domain", "203.0.113.7"), "an address, not a host name"},
		{"a wildcard", acmeConfig("tally:domain", "*.example.com"), "DNS-01"},
		{"not a host name", acmeConfig("tally:domain", "tally example"), "tally:domain"},
		{"a server that is not https", acmeConfig("tally:acmeServer", "http://acme.example.com/dir"), "tally:acmeServer"},
		{"an email without @", acmeConfig("tally:acmeEmail", "ops"), "tally:acmeEmail"},
		{"roots that are not PEM", acmeConfig("tally:acmeRoots", "nope"), "tally:acmeRoots"},
		{"a domain and a certificate", with(acmeConfig(), "tally:tlsCert", "x", "tally:tlsKey", "y"), "choose one"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := runProgram(t, "dev", c.cfg, repoFiles(t))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("program: %v, want an error saying %q", err, c.want)
			}
		})
	}
	r := mustRun(t, "dev", acmeConfig("tally:acmeServer", "letsencrypt-staging"))
	if c := decode[containerInputs](t, r.named("tally-dev-certs")); !slices.Contains(c.Command, acmeServers["letsencrypt-staging"]) {
		t.Errorf("letsencrypt-staging runs %v", c.Command)
	}
}
