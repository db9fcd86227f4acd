package stack

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// CheckEngine asks the Docker engine that tally:dockerHost names whether it
// answers (GET /_ping), and when it does not, says why in the terms of the
// stack's config. For tcp:// and unix:// hosts the docker provider reports
// only "failed to connect to any docker daemon", whatever the cause: a wrong
// CA, a missing client certificate, a host that is down. ssh:// hosts are
// left to the provider, whose message names the host and ssh's own reason.
func CheckEngine(ctx context.Context, cfg Config) error {
	u, err := url.Parse(cfg.DockerHost)
	if cfg.DockerHost == "" || err != nil || (u.Scheme != "tcp" && u.Scheme != "unix") {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := engineGet(ctx, cfg, "/_ping")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	switch {
	case resp.StatusCode == http.StatusOK:
		return nil
	case strings.Contains(string(body), "HTTP request to an HTTPS server"):
		return fmt.Errorf("the Docker engine at %s speaks TLS: set tally:caPem, tally:certPem and tally:keyPem (pulumi config set --secret tally:caPem < ca.pem, and so on)", cfg.DockerHost)
	default:
		return fmt.Errorf("the Docker engine at %s answered GET /_ping with %s: %s", cfg.DockerHost, resp.Status, strings.TrimSpace(string(body)))
	}
}

// CheckSwarmNodes asks a swarm's manager for its nodes and says, before
// anything is deployed, what keeps the replicated Redis and its Sentinels
// from each having a node of its own (checkPlacement). A swarm without
// replicas, and one engine, need no look.
func CheckSwarmNodes(ctx context.Context, cfg Config) error {
	if cfg.Target != "swarm" || cfg.RedisReplicas == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := engineGet(ctx, cfg, "/nodes")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("listing the swarm's nodes at %s: %w", hostOrLocal(cfg), err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("listing the swarm's nodes at %s: %s: %s (is it a swarm manager?)", hostOrLocal(cfg), resp.Status, strings.TrimSpace(string(body)))
	}
	var list []struct {
		Description struct{ Hostname string }
		Spec        struct{ Labels map[string]string }
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return fmt.Errorf("listing the swarm's nodes at %s: %w", hostOrLocal(cfg), err)
	}
	nodes := make([]swarmNode, 0, len(list))
	for _, n := range list {
		nodes = append(nodes, swarmNode{Name: n.Description.Hostname, Labels: n.Spec.Labels})
	}
	return checkPlacement(cfg.RedisReplicas, nodes)
}

func hostOrLocal(cfg Config) string {
	if cfg.DockerHost == "" {
		return "the local engine"
	}
	return cfg.DockerHost
}

// engineGet sends GET path to the engine cfg names, as the docker CLI and
// the provider reach it: a Unix socket (DOCKER_HOST, or the local one),
// tcp:// with the config's TLS material, or ssh://, through the remote
// docker CLI's dial-stdio.
func engineGet(ctx context.Context, cfg Config, path string) (*http.Response, error) {
	host := cfg.DockerHost
	if host == "" {
		host = os.Getenv("DOCKER_HOST")
	}
	if host == "" {
		host = "unix:///var/run/docker.sock"
	}
	u, err := url.Parse(host)
	if err != nil {
		return nil, fmt.Errorf("tally:dockerHost = %q: %w", host, err)
	}
	transport := &http.Transport{DisableKeepAlives: true}
	base := "http://" + u.Host
	switch {
	case u.Scheme == "unix":
		transport.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", u.Path)
		}
		base = "http://docker"
	case u.Scheme == "ssh":
		transport.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialStdio(ctx, cfg.SSHOpts, u)
		}
		base = "http://docker"
	case cfg.CAPem != "":
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM([]byte(cfg.CAPem))
		cert, err := tls.X509KeyPair([]byte(cfg.CertPem), []byte(cfg.KeyPem))
		if err != nil {
			return nil, err // ParseConfig has said so already
		}
		transport.TLSClientConfig = &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		base = "https://" + u.Host
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return nil, fmt.Errorf("tally:dockerHost = %q: %w", host, err)
	}
	resp, err := (&http.Client{Transport: transport}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("the Docker engine at %s does not answer: %w%s", host, err, hint(err))
	}
	return resp, nil
}

// hint turns the TLS errors a misconfigured client meets into what to change.
func hint(err error) string {
	var unknownCA x509.UnknownAuthorityError
	var wrongHost x509.HostnameError
	switch {
	case errors.As(err, &unknownCA):
		return " (its certificate is not signed by the CA in tally:caPem)"
	case errors.As(err, &wrongHost):
		return " (its certificate is not for this host name: use the name or address it was issued for in tally:dockerHost)"
	case strings.Contains(err.Error(), "certificate required"), strings.Contains(err.Error(), "bad certificate"),
		strings.Contains(err.Error(), "unknown certificate authority"):
		return " (it refused the client certificate in tally:certPem: the engine's CA did not sign it)"
	case strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return " (it does not speak TLS: unset tally:caPem, tally:certPem and tally:keyPem, or use the engine's TLS port)"
	}
	return ""
}
