package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

type config struct {
	Port            int
	RedisAddr       string
	RedisSentinels  []string
	RedisMaster     string
	WaitReplicas    int
	RedisPassword   string
	RedisDB         int
	CounterKey      string
	RedisTimeout    time.Duration
	ShutdownTimeout time.Duration
	LogLevel        slog.Level
	DebugAddr       string
}

// envVars is the one list of settings: --help prints it, loadConfig reads it.
var envVars = []struct{ name, def, help string }{
	{"PORT", "8080", "TCP port to listen on (1-65535)"},
	{"REDIS_ADDR", "localhost:6379", "Redis address, host:port"},
	{"REDIS_HOST", "localhost", "Redis host, used with REDIS_PORT when REDIS_ADDR is unset"},
	{"REDIS_PORT", "6379", "Redis port, used with REDIS_HOST when REDIS_ADDR is unset"},
	{"REDIS_SENTINELS", "", "Sentinel addresses, host:port,host:port,...; when set, the primary is the one they name, followed through failovers, in place of REDIS_ADDR"},
	{"REDIS_MASTER_NAME", "tally", "the name the Sentinels monitor the primary by"},
	{"REDIS_WAIT_REPLICAS", "", "replicas a visit must reach before /count answers 200 (WAIT); 1 with REDIS_SENTINELS, else 0"},
	{"REDIS_PASSWORD", "", "Redis password, the Sentinels' too (never logged)"},
	{"REDIS_PASSWORD_FILE", "", "file holding the Redis password, e.g. a Docker secret; instead of REDIS_PASSWORD"},
	{"REDIS_DB", "0", "Redis database number (0-15)"},
	{"COUNTER_KEY", "visits", "Redis key holding the count"},
	{"REDIS_TIMEOUT", "300ms", "bound on one Redis command; /count answers 503 past it unless Redis may have counted the visit"},
	{"SHUTDOWN_TIMEOUT", "10s", "time in-flight requests get to finish after SIGTERM"},
	{"LOG_LEVEL", "info", "debug, info, warn or error"},
	{"DEBUG_ADDR", "", "host:port for a listener serving /debug/pprof; off when unset; never publish it"},
}

// configError names the variable, what it held and what was expected. It is
// the whole message a user sees, so it fits on one line.
type configError struct{ name, value, want string }

func (e *configError) Error() string {
	return fmt.Sprintf("invalid %s=%q: want %s", e.name, e.value, e.want)
}

// setting is the variable's value without surrounding spaces, or its
// default from envVars when unset.
func setting(getenv func(string) string, name string) string {
	if v := strings.TrimSpace(getenv(name)); v != "" {
		return v
	}
	for _, e := range envVars {
		if e.name == name {
			return e.def
		}
	}
	return ""
}

// listenPort is PORT: where the service listens and the health check asks.
func listenPort(getenv func(string) string) (int, error) {
	return intVar("PORT", setting(getenv, "PORT"), 1, 65535, "a TCP port number 1-65535")
}

func loadConfig(getenv func(string) string) (config, error) {
	get := func(name string) string { return setting(getenv, name) }
	var cfg config
	var err error
	if cfg.Port, err = listenPort(getenv); err != nil {
		return cfg, err
	}
	if cfg.RedisSentinels, err = sentinels(getenv, get); err != nil {
		return cfg, err
	}
	if cfg.RedisSentinels == nil {
		if cfg.RedisAddr, err = redisAddr(getenv, get); err != nil {
			return cfg, err
		}
	}
	if cfg.RedisMaster = get("REDIS_MASTER_NAME"); strings.ContainsAny(cfg.RedisMaster, " \t,") {
		return cfg, &configError{"REDIS_MASTER_NAME", cfg.RedisMaster, "a name without spaces or commas, as in Sentinel's `sentinel monitor <name>`"}
	}
	if cfg.WaitReplicas, err = waitReplicas(get("REDIS_WAIT_REPLICAS"), cfg.RedisSentinels != nil); err != nil {
		return cfg, err
	}
	if cfg.RedisDB, err = intVar("REDIS_DB", get("REDIS_DB"), 0, 15, "a database number 0-15"); err != nil {
		return cfg, err
	}
	if cfg.RedisPassword, err = redisPassword(getenv); err != nil {
		return cfg, err
	}
	cfg.CounterKey = get("COUNTER_KEY")
	if cfg.RedisTimeout, err = durationVar("REDIS_TIMEOUT", get("REDIS_TIMEOUT"), time.Minute); err != nil {
		return cfg, err
	}
	if cfg.ShutdownTimeout, err = durationVar("SHUTDOWN_TIMEOUT", get("SHUTDOWN_TIMEOUT"), time.Hour); err != nil {
		return cfg, err
	}
	if err := cfg.LogLevel.UnmarshalText([]byte(get("LOG_LEVEL"))); err != nil {
		return cfg, &configError{"LOG_LEVEL", get("LOG_LEVEL"), "debug, info, warn or error"}
	}
	if cfg.DebugAddr = get("DEBUG_ADDR"); cfg.DebugAddr != "" {
		if _, port, err := net.SplitHostPort(cfg.DebugAddr); err != nil || port == "" {
			return cfg, &configError{"DEBUG_ADDR", cfg.DebugAddr, "host:port, e.g. 127.0.0.1:6060"}
		}
	}
	return cfg, nil
}

// redisAddr prefers REDIS_ADDR; REDIS_HOST and REDIS_PORT are the original
// app's names, kept so its deployments move over unchanged: either one alone
// takes the other's default.
func redisAddr(getenv, get func(string) string) (string, error) {
	if strings.TrimSpace(getenv("REDIS_ADDR")) != "" || strings.TrimSpace(getenv("REDIS_HOST"))+strings.TrimSpace(getenv("REDIS_PORT")) == "" {
		addr := get("REDIS_ADDR")
		host, port, err := net.SplitHostPort(addr)
		if err != nil || host == "" {
			return "", &configError{"REDIS_ADDR", addr, "host:port, e.g. redis:6379"}
		}
		if _, err := intVar("REDIS_ADDR", port, 1, 65535, "host:port with a port 1-65535"); err != nil {
			return "", &configError{"REDIS_ADDR", addr, "host:port with a port 1-65535"}
		}
		return addr, nil
	}
	port, err := intVar("REDIS_PORT", get("REDIS_PORT"), 1, 65535, "a TCP port number 1-65535")
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(get("REDIS_HOST"), strconv.Itoa(port)), nil
}

// sentinels is REDIS_SENTINELS split at commas, each a host:port; nil when
// unset. REDIS_ADDR (or REDIS_HOST, REDIS_PORT) beside it would be ignored,
// so it is refused: a user who set both meant one of them.
func sentinels(getenv, get func(string) string) ([]string, error) {
	list := get("REDIS_SENTINELS")
	if list == "" {
		return nil, nil
	}
	for _, name := range []string{"REDIS_ADDR", "REDIS_HOST", "REDIS_PORT"} {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			return nil, &configError{name, v, "unset when REDIS_SENTINELS is set: the Sentinels say where the primary is"}
		}
	}
	var addrs []string
	for _, addr := range strings.Split(list, ",") {
		addr = strings.TrimSpace(addr)
		host, port, err := net.SplitHostPort(addr)
		if err == nil && host != "" {
			_, err = intVar("REDIS_SENTINELS", port, 1, 65535, "")
		}
		if err != nil || host == "" {
			return nil, &configError{"REDIS_SENTINELS", list, "host:port[,host:port...] with ports 1-65535, e.g. sentinel-1:26379,sentinel-2:26379"}
		}
		addrs = append(addrs, addr)
	}
	return addrs, nil
}

// waitReplicas is REDIS_WAIT_REPLICAS, by default 1 behind Sentinels (a
// visit acknowledged only once a failover cannot lose it) and 0 without.
func waitReplicas(value string, sentinels bool) (int, error) {
	if value == "" {
		if sentinels {
			return 1, nil
		}
		return 0, nil
	}
	return intVar("REDIS_WAIT_REPLICAS", value, 0, 16, "a number of replicas 0-16")
}

// redisPassword is REDIS_PASSWORD, or the content of REDIS_PASSWORD_FILE
// without its trailing newline: a file keeps the password out of the
// container's environment, which `docker inspect` shows to anyone.
func redisPassword(getenv func(string) string) (string, error) {
	password := getenv("REDIS_PASSWORD") // spaces may be part of a password
	path := strings.TrimSpace(getenv("REDIS_PASSWORD_FILE"))
	if path == "" {
		return password, nil
	}
	if password != "" {
		return "", &configError{"REDIS_PASSWORD_FILE", path, "REDIS_PASSWORD unset: set one of the two"}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", &configError{"REDIS_PASSWORD_FILE", path, fmt.Sprintf("a readable file holding the password (%v)", errors.Unwrap(err))}
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

func intVar(name, value string, lo, hi int, want string) (int, error) {
	n, err := strconv.Atoi(value)
	if err != nil || n < lo || n > hi {
		return 0, &configError{name, value, want}
	}
	return n, nil
}

func durationVar(name, value string, max time.Duration) (time.Duration, error) {
	d, err := time.ParseDuration(value)
	if err != nil || d <= 0 || d > max {
		return 0, &configError{name, value, fmt.Sprintf("a duration such as 300ms or 2s, above 0 and at most %s", max)}
	}
	return d, nil
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, `tally serves a visit counter kept in Redis.

Usage:
  tally               serve HTTP, configured by the environment below
  tally healthcheck   probe /healthz on localhost:$PORT; exit 0 if healthy, 1 if not

Environment:
`)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, e := range envVars {
		def := e.def
		if def == "" {
			def = "-"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", e.name, def, e.help)
	}
	tw.Flush()
}
