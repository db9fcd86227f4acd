// Command tally serves the visit counter.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"tally/app/redis"
	"tally/app/web"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Getenv, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "tally:", err)
		var ce *configError
		if errors.As(err, &ce) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) > 1 {
		switch args[1] {
		case "-h", "-help", "--help", "help":
			printUsage(stdout)
			return nil
		case "healthcheck":
			return healthcheck(ctx, getenv)
		default:
			printUsage(stdout)
			return &configError{"argument", args[1], "no argument, healthcheck or --help"}
		}
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, stdout)
}

func serve(ctx context.Context, cfg config, stdout io.Writer) error {
	logger := slog.New(slog.NewJSONHandler(stdout, &slog.HandlerOptions{Level: cfg.LogLevel}))
	instance, err := os.Hostname()
	if err != nil {
		return fmt.Errorf("hostname: %w", err)
	}
	redis.SetLogger(logger)
	counter := redis.New(redis.Config{
		Addr: cfg.RedisAddr, Sentinels: cfg.RedisSentinels, MasterName: cfg.RedisMaster,
		Password: cfg.RedisPassword, DB: cfg.RedisDB,
		Key: cfg.CounterKey, Timeout: cfg.RedisTimeout, Replicas: cfg.WaitReplicas,
	})
	defer counter.Close()

	var draining atomic.Bool
	handler := web.NewServer(logger, counter, prometheus.NewRegistry(),
		web.Info{Instance: instance, Version: version}, &draining)
	srv := web.NewHTTPServer(net.JoinHostPort("", strconv.Itoa(cfg.Port)), handler, logger)

	// Listen before logging "listening" so the line is true when read.
	ln, err := net.Listen("tcp", srv.Addr)
	if err != nil {
		return err
	}
	logger.Info("listening", "addr", ln.Addr().String(), "version", version, "instance", instance,
		"redis_addr", cfg.RedisAddr, "redis_sentinels", strings.Join(cfg.RedisSentinels, ","), "redis_master_name", cfg.RedisMaster,
		"redis_wait_replicas", cfg.WaitReplicas, "counter_key", cfg.CounterKey)

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	if cfg.DebugAddr != "" {
		debug := &http.Server{Addr: cfg.DebugAddr, Handler: debugHandler(), ReadHeaderTimeout: 5 * time.Second}
		defer debug.Close()
		go func() {
			if err := debug.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Error("debug listener", "addr", cfg.DebugAddr, "error", err.Error())
			}
		}()
	}

	select {
	case err := <-serveErr:
		return err
	case <-ctx.Done():
	}
	// Not ready first, so health checks see it; then Shutdown closes the
	// listener and waits for in-flight requests.
	draining.Store(true)
	logger.Info("shutting down", "timeout", cfg.ShutdownTimeout.String())
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	logger.Info("stopped")
	return nil
}

// debugHandler serves Go's profiles, on a listener of its own so they are
// never reachable through the service's port.
func debugHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// healthcheck is for images without a shell or curl: HEALTHCHECK runs the
// binary itself.
func healthcheck(ctx context.Context, getenv func(string) string) error {
	port, err := listenPort(getenv)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:"+strconv.Itoa(port)+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: /healthz answered %s", resp.Status)
	}
	return nil
}
