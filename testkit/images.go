package testkit

import (
	"bytes"
	"fmt"
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
func official(root string) (map[string]string, error) {
	b, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		return nil, err
	}
	images := map[string]string{}
	for _, m := range composeDefault.FindAllStringSubmatch(string(b), -1) {
		images[m[1]] = m[2]
	}
	if len(images) != 3 {
		return nil, fmt.Errorf("docker-compose.yml names defaults for %v; want REDIS_IMAGE, NGINX_IMAGE and GO_IMAGE", images)
	}
	return images, nil
}

// PickImages returns the redis, nginx and golang images to test or
// benchmark with, by variable: the environment's choice, else the official
// image if the engine has it or can pull it, else the local stand-ins that
// offline/build.sh (under root, the repository) builds from Debian's
// packages on first use. logf hears when it falls back to them.
func PickImages(root string, logf func(format string, args ...any)) (map[string]string, error) {
	images, err := official(root)
	if err != nil {
		return nil, err
	}
	chosen := map[string]string{}
	offline := false
	for env, image := range images {
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
		return chosen, nil
	}
	logf("official images cannot be pulled here; using local stand-ins (make offline-images)")
	cmd := exec.Command("bash", filepath.Join(root, "offline", "build.sh"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("offline/build.sh: %v\n%s", err, stderr.String())
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			if _, set := chosen[k]; !set {
				chosen[k] = v
			}
		}
	}
	return chosen, nil
}

// Images is PickImages for a test, which fails if they cannot be had.
func Images(t testing.TB, root string) map[string]string {
	t.Helper()
	images, err := PickImages(root, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	return images
}
