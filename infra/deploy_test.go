package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"
)

// TestDeployToLocalEngine runs the real program through the Automation API
// against this machine's Docker engine: up, scale, preview, destroy. It needs
// the pulumi CLI and its docker provider plugin; without them it skips, even
// under CI=true, because CI machines here cannot install them (the mock
// tests in tally/ cover the program's shape there).
func TestDeployToLocalEngine(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping the real deployment in -short mode")
	}
	if _, err := exec.LookPath("pulumi"); err != nil {
		t.Skip("skipping the real deployment: the pulumi CLI is not on PATH (https://www.pulumi.com/docs/install/)")
	}
	if !hasDockerPlugin() {
		t.Skip("skipping the real deployment: the pulumi docker provider plugin is missing (pulumi plugin install resource docker v4.10.0)")
	}
	if err := exec.Command("docker", "info").Run(); err != nil {
		t.Skip("skipping the real deployment: no Docker engine answers")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	stackName := fmt.Sprintf("test%d", time.Now().UnixNano()%1_000_000)
	port := freePort(t)
	stack, err := auto.UpsertStackLocalSource(ctx, stackName, ".", auto.EnvVars(map[string]string{
		"PULUMI_BACKEND_URL":       "file://" + t.TempDir(),
		"PULUMI_CONFIG_PASSPHRASE": "test-only",
	}))
	if err != nil {
		t.Fatal(err)
	}
	cfg := auto.ConfigMap{
		"tally:redisPassword": {Value: "deploy-test-" + stackName, Secret: true},
		"tally:httpPort":      {Value: strconv.Itoa(port)},
		"tally:replicas":      {Value: "3"},
	}
	for _, img := range []string{"REDIS_IMAGE:redisImage", "NGINX_IMAGE:nginxImage", "GO_IMAGE:goImage"} {
		env, key, _ := strings.Cut(img, ":")
		if v := os.Getenv(env); v != "" {
			cfg["tally:"+key] = auto.ConfigValue{Value: v}
		}
	}
	if err := stack.SetAllConfig(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	volume := "tally-" + stackName + "-redis-data"
	t.Cleanup(func() {
		_, _ = stack.Destroy(context.Background())
		_ = stack.Workspace().RemoveStack(context.Background(), stackName)
		_ = exec.Command("docker", "volume", "rm", "-f", volume).Run()
	})

	up, err := stack.Up(ctx)
	if err != nil {
		t.Fatalf("up: %v", err)
	}
	url, _ := up.Outputs["url"].Value.(string)
	if url != fmt.Sprintf("http://localhost:%d/", port) {
		t.Fatalf("url output = %q", url)
	}
	url = strings.Replace(url, "localhost", "127.0.0.1", 1)
	first, _ := count(t, url)
	instances := map[string]bool{}
	for range 30 {
		n, inst := count(t, url)
		if n <= first {
			t.Fatalf("/count went from %d to %d", first, n)
		}
		first = n
		instances[inst] = true
	}
	if len(instances) != 3 {
		t.Errorf("requests reached %d instances, want 3", len(instances))
	}

	if err := stack.SetConfig(ctx, "tally:replicas", auto.ConfigValue{Value: "5"}); err != nil {
		t.Fatal(err)
	}
	scaled, err := stack.Up(ctx)
	if err != nil {
		t.Fatalf("up with 5 replicas: %v", err)
	}
	if changes := *scaled.Summary.ResourceChanges; changes["create"] != 2 || changes["update"] != 0 || changes["replace"] != 0 || changes["delete"] != 0 {
		t.Errorf("scaling 3→5 changed %v, want exactly 2 creates", changes)
	}

	preview, err := stack.Preview(ctx)
	if err != nil {
		t.Fatalf("preview: %v", err)
	}
	for op, n := range preview.ChangeSummary {
		if op != apitype.OpSame && n > 0 {
			t.Errorf("a preview right after up shows changes: %v", preview.ChangeSummary)
		}
	}

	if _, err := stack.Destroy(ctx); err != nil {
		t.Fatalf("destroy: %v", err)
	}
	if err := exec.Command("docker", "volume", "inspect", volume).Run(); err != nil {
		t.Errorf("the Redis volume %s is gone after destroy; it must be kept", volume)
	}
}

func hasDockerPlugin() bool {
	out, err := exec.Command("pulumi", "plugin", "ls", "--json").Output()
	var plugins []struct{ Name, Kind string }
	if err != nil || json.Unmarshal(out, &plugins) != nil {
		return false
	}
	for _, p := range plugins {
		if p.Name == "docker" && p.Kind == "resource" {
			return true
		}
	}
	return false
}

func count(t *testing.T, url string) (int64, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url+"count", nil)
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /count: %v", err)
	}
	defer resp.Body.Close()
	var v struct {
		Count    int64
		Instance string
	}
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&v) != nil {
		t.Fatalf("GET /count = %s", resp.Status)
	}
	return v.Count, v.Instance
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
