package testkit

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// composeDefault matches a default image in docker-compose.yml, such as
// ${REDIS_IMAGE:-redis:8.0}: the one place the official images are named.
var composeDefault = regexp.MustCompile(`\$\{((?:REDIS|NGINX|GO)_IMAGE):-([^}]+)\}`)

// official returns the images users run, by the variable that names each in
// .env and in the tests' environment, as docker-compose.yml gives them.
func official(t testing.TB, root string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	images := map[string]string{}
	for _, m := range composeDefault.FindAllStringSubmatch(string(b), -1) {
		images[m[1]] = m[2]
	}
	if len(images) != 3 {
		t.Fatalf("docker-compose.yml names defaults for %v; want REDIS_IMAGE, NGINX_IMAGE and GO_IMAGE", images)
	}
	return images
}

// Images returns the redis, nginx and golang images to test with, by
// variable: the environment's choice, else the official image if the
// engine has it or can pull it, else the local stand-ins that
// offline/build.sh (under root, the repository) builds from Debian's
// packages on first use.
func Images(t testing.TB, root string) map[string]string {
	t.Helper()
	chosen := map[string]string{}
	offline := false
	for env, image := range official(t, root) {
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
