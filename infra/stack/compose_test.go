package stack

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// composeService is what docker-compose.yml says of a service, in the
// fields the Pulumi program must agree with.
type composeService struct {
	User        string
	ReadOnly    bool     `yaml:"read_only"`
	CapDrop     []string `yaml:"cap_drop"`
	SecurityOpt []string `yaml:"security_opt"`
	MemLimit    string   `yaml:"mem_limit"`
	Cpus        float64
	PidsLimit   int `yaml:"pids_limit"`
	Healthcheck struct {
		Test    []string
		Retries int
	}
	StopSignal      string `yaml:"stop_signal"`
	StopGracePeriod string `yaml:"stop_grace_period"`
	Logging         struct {
		Driver  string
		Options map[string]string
	}
}

// composeOnly are the services docker-compose.yml runs that the Pulumi
// program does another way, and how.
var composeOnly = map[string]string{
	"redis-password": "writes the password file once into a volume; the program uploads it (password.go)",
	"edge":           "holds nginx's port; the program makes its holder from nginx's handoff order (handoff.go)",
	"certs":          "makes a local run's certificate; a deployed stack serves the one its config gives (tls.go)",
}

// Every service of the list runs under Compose as the Pulumi program runs
// it: same user, health check, memory, CPU and PIDs limits, read-only root,
// capabilities, no-new-privileges, stop signal and grace.
func TestComposeAgreesWithTheServiceList(t *testing.T) {
	b, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var compose struct{ Services map[string]composeService }
	if err := yaml.Unmarshal(b, &compose); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	svcs := services(Config{Replicas: 3}, repoFiles(t))
	for _, svc := range svcs {
		c, ok := compose.Services[svc.role]
		if !ok {
			t.Errorf("docker-compose.yml has no service %s", svc.role)
			continue
		}
		// Compose writes $ as $$ in a value, so it is not its own variable.
		test := make([]string, len(c.Healthcheck.Test))
		for i, arg := range c.Healthcheck.Test {
			test[i] = strings.ReplaceAll(arg, "$$", "$")
		}
		for _, d := range []struct {
			what          string
			compose, list any
		}{
			{"user", c.User, svc.user},
			{"read-only root", c.ReadOnly, true},
			{"capabilities dropped", strings.Join(c.CapDrop, ","), dropAll},
			{"security options", strings.Join(c.SecurityOpt, ","), noNewPrivileges},
			{"memory limit", c.MemLimit, strconv.Itoa(svc.memoryMB) + "m"},
			{"CPU limit", c.Cpus, float64(svc.cpus)},
			{"PIDs limit", c.PidsLimit, svc.pids},
			{"health check", strings.Join(test, " "), strings.Join(svc.health, " ")},
			{"health check retries", c.Healthcheck.Retries, svc.retries},
			{"stop signal", c.StopSignal, svc.stopSignal},
			{"stop grace", c.StopGracePeriod, strconv.Itoa(svc.stopGrace) + "s"},
			{"log driver", c.Logging.Driver, logDriver},
			{"log size", c.Logging.Options["max-size"], logMaxSize},
			{"log files", c.Logging.Options["max-file"], logMaxFiles},
		} {
			if d.compose != d.list {
				t.Errorf("%s: %s is %v in docker-compose.yml, %v in the service list", svc.role, d.what, d.compose, d.list)
			}
		}
	}
	for role, c := range compose.Services {
		if _, ok := byRole(svcs, role); ok {
			continue
		}
		if _, ok := composeOnly[role]; !ok {
			t.Errorf("docker-compose.yml runs %s, which the service list does not have", role)
		}
		if !c.ReadOnly || !slices.Equal(c.CapDrop, []string{dropAll}) || !slices.Equal(c.SecurityOpt, []string{noNewPrivileges}) ||
			c.MemLimit == "" || c.Cpus == 0 || c.PidsLimit == 0 || c.User == "" || strings.HasPrefix(c.User, "0") || c.Logging.Options["max-size"] != logMaxSize {
			t.Errorf("%s in docker-compose.yml is not hardened as every service is: %+v", role, c)
		}
	}
}
