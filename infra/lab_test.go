package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"maps"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optpreview"

	"tally/testkit"
)

// TestDeployToLabHosts deploys two stacks of one checkout to two engines
// that are not this machine's: dev to lab node 1 over SSH, prod to lab
// node 2 over TCP with TLS (lab/lab.sh; README, "The lab"). Each comes up
// on its own host only, with the app image built there, answers through
// that host's address from every replica, previews no changes, and changes
// only its own host; nothing of either reaches the local engine. Hosts that
// cannot be reached or refuse the client fail the preview within seconds,
// naming the host and the cause.
func TestDeployToLabHosts(t *testing.T) {
	ws := newWorkspace(t)
	lab := testkit.Lab(t, "..", slices.Collect(maps.Values(ws.images)))
	sshHost, tlsHost := labEngines(t, lab)
	local := snapshot(t, localEngine())

	// The default port: each host has its own.
	dev, prod := newDeployment(t, ws, "dev", sshHost, 0), newDeployment(t, ws, "prod", tlsHost, 0)
	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"a host that cannot be reached or refuses the client fails the preview, naming both", func(t *testing.T) {
			badHosts(t, ws, sshHost, tlsHost)
		}},
		{"dev comes up on the SSH host", func(t *testing.T) { upOnLabHost(t, dev, tlsHost) }},
		{"prod comes up on the TLS host", func(t *testing.T) { upOnLabHost(t, prod, sshHost) }},
		{"each previews no changes", func(t *testing.T) {
			dev.t, prod.t = t, t
			dev.expectNoChanges()
			prod.expectNoChanges()
		}},
		{"scaling dev under load changes only the SSH host", func(t *testing.T) {
			dev.t, prod.t = t, t
			prodBefore := prod.ids()
			dev.setConfig("tally:replicas", "4")
			res, load := dev.upUnderLoad()
			dev.expectChanges(res, map[string]int{"create": 1})
			dev.expectNoFailures(load)
			dev.expectInstances(4)
			if after := prod.ids(); !slices.Equal(after.web, prodBefore.web) || !slices.Equal(after.nginx, prodBefore.nginx) || !slices.Equal(after.redis, prodBefore.redis) {
				t.Errorf("updating dev changed prod's containers: before %+v, after %+v", prodBefore, after)
			}
			prod.expectNoChanges()
		}},
		{"nothing of either stack is on the local engine", func(t *testing.T) {
			if now := snapshot(t, localEngine()); !now.equal(local) {
				t.Errorf("the local engine changed while the stacks went to the lab:\nbefore %v\nafter  %v", local, now)
			}
		}},
		{"destroy leaves each host with only the Redis volume", func(t *testing.T) {
			for _, d := range []*deployment{dev, prod} {
				d.t = t
				d.destroy()
				left := snapshotOf(t, d.engine, "label=tally.stack="+d.name)
				if len(left.containers)+len(left.networks) > 0 || !slices.Equal(left.volumes, []string{d.volume()}) {
					t.Errorf("after destroy, %s holds %v of stack %s; want only the volume %s", d.engine.name, left, d.name, d.volume())
				}
			}
		}},
	}
	for _, s := range steps {
		if !t.Run(s.name, s.run) {
			t.Fatalf("stopping: step %q failed", s.name)
		}
	}
}

// upOnLabHost deploys d and checks it is on its host and serving, and that
// other, the other lab host, got nothing of it.
func upOnLabHost(t *testing.T, d *deployment, other engine) {
	d.t = t
	on, name := d.engine, d.name
	d.expectServing(d.up(), d.url+"/", 3)
	d.expectOnlyPublicRoutes()
	d.expectPasswordHidden()
	if images := snapshotOf(t, on, "reference=tally-"+name+"-web:*").images; len(images) != 1 {
		t.Errorf("%s has app images %v; want the one built there", on.name, images)
	}
	if got := snapshotOf(t, other, "label=tally.stack="+name); !got.empty() {
		t.Errorf("%s holds %v of stack %s, which belongs on %s", other.name, got, name, on.name)
	}
}

// badHosts previews a stack pointed at hosts that cannot be used, each for
// its own reason, and checks the preview fails promptly with a message that
// names the host and the reason.
func badHosts(t *testing.T, ws *workspace, sshHost, tlsHost engine) {
	var sshOpts []string
	if err := json.Unmarshal([]byte(sshHost.config["tally:sshOpts"].Value), &sshOpts); err != nil {
		t.Fatal(err)
	}
	addr1, addr2 := sshHost.addr, tlsHost.addr
	otherKey := filepath.Join(t.TempDir(), "id_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", otherKey).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	emptyKnownHosts := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(emptyKnownHosts, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	withOpts := func(replace ...string) string { // sshOpts with some flags' values replaced
		opts := slices.Clone(sshOpts)
		for i := range opts {
			for j := 0; j+1 < len(replace); j += 2 {
				if strings.HasPrefix(opts[i], replace[j]) {
					opts[i] = replace[j+1]
				}
			}
		}
		b, _ := json.Marshal(opts)
		return string(b)
	}
	keyFlag := sshOpts[slices.Index(sshOpts, "-i")+1]
	foreignCA, foreignCert, foreignKey := foreignTLS(t)
	tlsConfig := tlsHost.config
	// An unreachable address inside the lab's own network: nothing is there.
	unreachable := strings.Join(append(strings.Split(addr1, ".")[:3], "99"), ".")

	for _, tc := range []struct {
		name   string
		config auto.ConfigMap
		want   []string
	}{
		{"SSH: nothing at the address", auto.ConfigMap{
			"tally:dockerHost": {Value: "ssh://tally-lab@" + unreachable}, "tally:sshOpts": sshHost.config["tally:sshOpts"],
		}, []string{unreachable, "No route to host"}},
		{"SSH: a user the host does not know", auto.ConfigMap{
			"tally:dockerHost": {Value: "ssh://nobody@" + addr1}, "tally:sshOpts": sshHost.config["tally:sshOpts"],
		}, []string{"nobody@" + addr1, "Permission denied (publickey)"}},
		{"SSH: a key the host refuses", auto.ConfigMap{
			"tally:dockerHost": sshHost.config["tally:dockerHost"], "tally:sshOpts": {Value: withOpts(keyFlag, otherKey)},
		}, []string{"tally-lab@" + addr1, "Permission denied (publickey)"}},
		{"SSH: a host key not in known_hosts", auto.ConfigMap{
			"tally:dockerHost": sshHost.config["tally:dockerHost"], "tally:sshOpts": {Value: withOpts("UserKnownHostsFile=", "UserKnownHostsFile="+emptyKnownHosts)},
		}, []string{addr1, "host key is known"}},
		{"TLS: nothing at the address", auto.ConfigMap{
			"tally:dockerHost": {Value: "tcp://" + unreachable + ":2376"},
			"tally:caPem":      tlsConfig["tally:caPem"], "tally:certPem": tlsConfig["tally:certPem"], "tally:keyPem": tlsConfig["tally:keyPem"],
		}, []string{"tcp://" + unreachable + ":2376", "no route to host"}},
		{"TLS: a CA that did not sign the engine's certificate", auto.ConfigMap{
			"tally:dockerHost": tlsConfig["tally:dockerHost"],
			"tally:caPem":      {Value: foreignCA, Secret: true}, "tally:certPem": tlsConfig["tally:certPem"], "tally:keyPem": tlsConfig["tally:keyPem"],
		}, []string{"tcp://" + addr2 + ":2376", "not signed by the CA in tally:caPem"}},
		{"TLS: a client certificate the engine's CA did not sign", auto.ConfigMap{
			"tally:dockerHost": tlsConfig["tally:dockerHost"], "tally:caPem": tlsConfig["tally:caPem"],
			"tally:certPem": {Value: foreignCert, Secret: true}, "tally:keyPem": {Value: foreignKey, Secret: true},
		}, []string{"tcp://" + addr2 + ":2376", "refused the client certificate"}},
		{"TLS: no client certificate", auto.ConfigMap{
			"tally:dockerHost": tlsConfig["tally:dockerHost"], "tally:caPem": tlsConfig["tally:caPem"],
		}, []string{"tally:certPem", "set all three"}},
		{"TLS: no TLS material at all", auto.ConfigMap{
			"tally:dockerHost": tlsConfig["tally:dockerHost"],
		}, []string{"tcp://" + addr2 + ":2376", "speaks TLS"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stack := ws.stack(t, "bad"+randomHex(2), engine{config: tc.config}, 0)
			if err := stack.SetConfig(ws.ctx, "tally:redisPassword", auto.ConfigValue{Value: randomHex(8), Secret: true}); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(ws.ctx, time.Minute)
			defer cancel()
			var out bytes.Buffer
			start := time.Now()
			_, err := stack.Preview(ctx, optpreview.ProgressStreams(&out))
			took := time.Since(start)
			switch {
			case err == nil:
				t.Fatalf("preview succeeded:\n%s", out.String())
			case took > 15*time.Second:
				t.Errorf("preview took %v to fail; want seconds", took.Round(time.Second))
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("the preview's error does not say %q:\n%v", want, err)
				}
			}
			t.Logf("failed in %v", took.Round(100*time.Millisecond))
		})
	}
}

// labEngines are lab node 1, reached over SSH, and node 2, over TLS, as
// the lab's KEY=value lines describe them.
func labEngines(t *testing.T, lab map[string]string) (sshHost, tlsHost engine) {
	sockets, addrs := strings.Fields(lab["LAB_SOCKETS"]), strings.Fields(lab["LAB_ADDRS"])
	if len(sockets) < 2 || len(addrs) < 2 {
		t.Fatalf("the lab has fewer than two nodes: %v", lab)
	}
	opts, _ := json.Marshal(strings.Fields(lab["LAB_SSH_OPTS"]))
	sshHost = engine{
		name: "lab node 1 (SSH)", flags: []string{"-H", sockets[0]}, addr: addrs[0],
		config: auto.ConfigMap{"tally:dockerHost": {Value: lab["LAB_SSH_HOST"]}, "tally:sshOpts": {Value: string(opts)}},
	}
	tlsHost = engine{
		name: "lab node 2 (TLS)", flags: []string{"-H", sockets[1]}, addr: addrs[1],
		config: auto.ConfigMap{"tally:dockerHost": {Value: lab["LAB_TLS_HOST"]}},
	}
	for key, file := range map[string]string{"tally:caPem": "ca.pem", "tally:certPem": "cert.pem", "tally:keyPem": "key.pem"} {
		b, err := os.ReadFile(filepath.Join(lab["LAB_TLS_CERTS"], file))
		if err != nil {
			t.Fatal(err)
		}
		tlsHost.config[key] = auto.ConfigValue{Value: string(b), Secret: true}
	}
	return sshHost, tlsHost
}

// foreignTLS makes a CA the lab never heard of, and a client certificate
// and key it signed, as PEM.
func foreignTLS(t *testing.T) (ca, cert, key string) {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey, clientKey := newKey(), newKey()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "not the lab's CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	clientTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "a stranger"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	clientDER, err := x509.CreateCertificate(rand.Reader, clientTmpl, caTmpl, &clientKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(clientKey)
	if err != nil {
		t.Fatal(err)
	}
	pemOf := func(typ string, der []byte) string {
		return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
	}
	return pemOf("CERTIFICATE", caDER), pemOf("CERTIFICATE", clientDER), pemOf("EC PRIVATE KEY", keyDER)
}

// objects are Docker objects of an engine, by ID or name, sorted.
type objects struct{ containers, networks, volumes, images []string }

func (o objects) empty() bool {
	return len(o.containers)+len(o.networks)+len(o.volumes)+len(o.images) == 0
}

func (o objects) equal(p objects) bool {
	return slices.Equal(o.containers, p.containers) && slices.Equal(o.networks, p.networks) &&
		slices.Equal(o.volumes, p.volumes) && slices.Equal(o.images, p.images)
}

func (o objects) String() string {
	return fmt.Sprintf("containers %v, networks %v, volumes %v, images %v", o.containers, o.networks, o.volumes, o.images)
}

// snapshot lists every container, network, volume and image of e.
func snapshot(t *testing.T, e engine) objects { return snapshotOf(t, e, "") }

// snapshotOf lists the objects of e that filter (docker's --filter) picks;
// kinds of object the filter does not apply to are left out.
func snapshotOf(t *testing.T, e engine, filter string) objects {
	t.Helper()
	list := func(args ...string) []string {
		if filter != "" {
			args = append(args, "--filter", filter)
		}
		out, err := e.docker(args...).CombinedOutput()
		if err != nil {
			if filter != "" && strings.Contains(strings.ToLower(string(out)), "invalid filter") {
				return nil
			}
			t.Fatalf("docker %v on %s: %v\n%s", args, e.name, err, out)
		}
		ids := strings.Fields(string(out))
		slices.Sort(ids)
		return ids
	}
	return objects{
		containers: list("ps", "-aq", "--no-trunc"),
		networks:   list("network", "ls", "-q", "--no-trunc"),
		volumes:    list("volume", "ls", "-q"),
		images:     list("image", "ls", "-q", "--no-trunc"),
	}
}
