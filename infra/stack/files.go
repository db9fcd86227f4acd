package stack

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Files are the repository files the stack deploys, read once at startup.
type Files struct {
	Root          string            // the repository root: the app image's build context
	Nginx         map[string]string // nginx/*.conf, by file name
	NginxServe    string            // nginx/serve.sh
	NginxRelease  string            // nginx/release.sh
	RedisStart    string            // redis/start.sh
	RedisReplica  string            // redis/replica.sh, run before start.sh's text on a swarm with replicas
	RedisSentinel string            // redis/sentinel.sh
	RedisBackup   string            // redis/backup.sh
	AppHash       string            // hash of the app image's build inputs: its tag
	CertsHash     string            // the same of the certs image's
	Images        Images            // the default images, from docker-compose.yml
}

// Images are the images the stack runs unless its config names others.
type Images struct{ Redis, Nginx, Go string }

// composeDefault matches a default image in docker-compose.yml, such as
// ${REDIS_IMAGE:-redis:8.0}: the one place the official images are named.
var composeDefault = regexp.MustCompile(`\$\{(REDIS|NGINX|GO)_IMAGE:-([^}]+)\}`)

func composeImages(compose string) (Images, error) {
	found := map[string]string{}
	for _, m := range composeDefault.FindAllStringSubmatch(compose, -1) {
		found[m[1]] = m[2]
	}
	img := Images{Redis: found["REDIS"], Nginx: found["NGINX"], Go: found["GO"]}
	if img.Redis == "" || img.Nginx == "" || img.Go == "" {
		return img, fmt.Errorf("docker-compose.yml names no default for one of REDIS_IMAGE, NGINX_IMAGE, GO_IMAGE (${NAME:-image}): found %v", found)
	}
	return img, nil
}

// ReadFiles reads what the stack needs from the repository at root.
func ReadFiles(root string) (Files, error) {
	f := Files{Root: root, Nginx: map[string]string{}}
	var compose string
	confs, err := filepath.Glob(filepath.Join(root, "nginx", "*.conf"))
	if err != nil || len(confs) == 0 {
		return f, fmt.Errorf("reading the stack's files: no nginx/*.conf under %s (is it the repository root?)", root)
	}
	for _, path := range confs {
		b, err := os.ReadFile(path)
		if err != nil {
			return f, fmt.Errorf("reading the stack's files: %w", err)
		}
		f.Nginx[filepath.Base(path)] = string(b)
	}
	for path, dst := range map[string]*string{
		"nginx/serve.sh":     &f.NginxServe,
		"nginx/release.sh":   &f.NginxRelease,
		"redis/start.sh":     &f.RedisStart,
		"redis/replica.sh":   &f.RedisReplica,
		"redis/sentinel.sh":  &f.RedisSentinel,
		"redis/backup.sh":    &f.RedisBackup,
		"docker-compose.yml": &compose,
	} {
		b, err := os.ReadFile(filepath.Join(root, path))
		if err != nil {
			return f, fmt.Errorf("reading the stack's files (is %s the repository root?): %w", root, err)
		}
		*dst = string(b)
	}
	if f.AppHash, err = hashBuildInputs(root, "app"); err != nil {
		return f, err
	}
	if f.CertsHash, err = hashBuildInputs(root, "certs"); err != nil {
		return f, err
	}
	f.Images, err = composeImages(compose)
	return f, err
}

// hashBuildInputs hashes what the Dockerfile copies of dir (see
// .dockerignore), so an image's tag, and with it the containers, change
// exactly when the program in dir does.
func hashBuildInputs(root, dir string) (string, error) {
	var paths []string
	err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		switch {
		case d.IsDir() && rel == filepath.Join(dir, "internal"):
			return filepath.SkipDir
		case d.Type().IsRegular() && !strings.HasSuffix(path, "_test.go"):
			paths = append(paths, rel)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("hashing the sources of %s: %w", dir, err)
	}
	paths = append(paths, "Dockerfile")
	sort.Strings(paths)
	h := sha256.New()
	for _, p := range paths {
		b, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			return "", fmt.Errorf("hashing the sources of %s: %w", dir, err)
		}
		fmt.Fprintf(h, "%s %d\n", filepath.ToSlash(p), len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:12], nil
}
