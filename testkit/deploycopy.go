package testkit

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
)

// DeployableCopy copies into dst what the Pulumi program deploys from the
// repository at root (the app, the certs service, nginx's and Redis'
// files, the program itself), so a test or benchmark can change the app or nginx's config
// without touching the checkout, and compiles the program there once:
// infra/Pulumi.yaml in the copy names the binary, so no pulumi command
// compiles it again.
func DeployableCopy(root, dst string) error {
	// An older revision (the upgrade test's) may lack one: it did not use it.
	var modules string
	for _, dir := range []string{"app", "certs", "infra", "nginx", "redis", "testkit"} {
		if _, err := os.Stat(filepath.Join(root, dir)); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err := os.CopyFS(filepath.Join(dst, dir), os.DirFS(filepath.Join(root, dir))); err != nil {
			return err
		}
		if _, err := os.Stat(filepath.Join(root, dir, "go.mod")); err == nil {
			modules += "\t./" + dir + "\n"
		}
	}
	for _, file := range []string{"Dockerfile", ".dockerignore", "docker-compose.yml", "go.work.sum"} {
		b, err := os.ReadFile(filepath.Join(root, file))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, file), b, 0o644); err != nil {
			return err
		}
	}
	work := "go 1.26.6\n\ntoolchain go1.26.10\n\nuse (\n" + modules + ")\n"
	project := "name: tally\nruntime:\n  name: go\n  options:\n    binary: bin/tally-infra\n"
	if err := os.WriteFile(filepath.Join(dst, "go.work"), []byte(work), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dst, "infra", "Pulumi.yaml"), []byte(project), 0o644); err != nil {
		return err
	}
	build := exec.Command("go", "build", "-o", "bin/tally-infra", ".")
	build.Dir = filepath.Join(dst, "infra")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("compiling the program: %v\n%s", err, out)
	}
	return nil
}
