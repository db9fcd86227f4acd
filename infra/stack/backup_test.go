package stack

import (
	"slices"
	"strings"
	"testing"
)

// tally:backupEvery adds a service that snapshots the first Redis into a
// volume of its own, kept as Redis's is, beside it on a swarm.
func TestScheduledBackups(t *testing.T) {
	for _, c := range []struct {
		target string
		config map[string]string
	}{{"docker", testConfig()}, {"swarm", swarmConfig()}} {
		t.Run(c.target, func(t *testing.T) {
			cfg := with(c.config, "tally:backupEvery", "6h", "tally:backupRetain", "3")
			r := mustRun(t, "prod", cfg)
			var env map[string]string
			if c.target == "swarm" {
				svc := decode[serviceInputs](t, r.named("tally-prod-backup"))
				env = svc.TaskSpec.ContainerSpec.Env
				if !slices.Equal(svc.TaskSpec.Placement.Constraints, []string{redisConstraint}) {
					t.Errorf("backup placed by %v; want beside the first Redis", svc.TaskSpec.Placement.Constraints)
				}
				expectHardened(t, servicesRunning(t, r), func(name string) bool { return name == "tally-prod-web" })
			} else {
				res := r.named("tally-prod-backup-1")
				if res.name == "" {
					res = r.named("tally-prod-backup")
				}
				c := decode[containerInputs](t, res)
				env = map[string]string{}
				for _, kv := range c.Envs {
					k, v, _ := strings.Cut(kv, "=")
					env[k] = v
				}
				vol := r.named("tally-prod-backup-data")
				if vol.name == "" || !vol.retainOnDelete {
					t.Errorf("the backups' volume %q is not kept on destroy as Redis's is", vol.name)
				}
				expectHardened(t, containersRunning(t, r), func(name string) bool { return strings.HasPrefix(name, "tally-prod-web") })
			}
			if env["BACKUP_EVERY"] != "21600" || env["BACKUP_RETAIN"] != "3" || env["REDIS_HOST"] != "redis" {
				t.Errorf("the backup service's environment %v", env)
			}
		})
	}
	r := mustRun(t, "prod", testConfig())
	if res := r.named("tally-prod-backup-data"); res.name != "" {
		t.Errorf("a stack without tally:backupEvery has a backup volume")
	}
	for _, bad := range []string{"5s", "90500ms", "daily"} {
		if _, err := runProgram(t, "prod", with(testConfig(), "tally:backupEvery", bad), repoFiles(t)); err == nil || !strings.Contains(err.Error(), "tally:backupEvery") {
			t.Errorf("tally:backupEvery %s: %v; want an error naming it", bad, err)
		}
	}
}
