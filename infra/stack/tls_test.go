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
}
