package testkit

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Official are the images users run, by the variable that names each in
// .env and in the tests' environment.
var Official = map[string]string{"REDIS_IMAGE": "redis:8.0", "NGINX_IMAGE": "nginx:1.30", "GO_IMAGE": "golang:1.26"}

// Images returns the redis, nginx and golang images to test with, by
// variable: the environment's choice, else the official image if the
// engine has it or can pull it, else the local stand-ins that
// offline/build.sh (under root, the repository) builds from Debian's
// packages on first use.
func Images(t testing.TB, root string) map[string]string {
	t.Helper()
	chosen := map[string]string{}
	offline := false
	for env, image := range Official {
		if v := os.Getenv(env); v != "" {
			chosen[env] = v
			continue
		}
		if exec.Command("docker", "image", "inspect", image).Run() == nil || exec.Command("docker", "pull", "-q", image).Run() == nil {
			chosen[env] = image
			continue
		}
		offline = true
	}
	if !offline {
		return chosen
	}
	t.Log("official images cannot be pulled here; using local stand-ins (make offline-images)")
	cmd := exec.Command("bash", filepath.Join(root, "offline", "build.sh"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("offline/build.sh: %v\n%s", err, stderr.String())
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			if _, set := chosen[k]; !set {
				chosen[k] = v
			}
		}
	}
	return chosen
}
