package stack

import (
	"slices"
	"strings"
	"testing"
)

// A swarm's Redis is a primary and two replicas on three labelled nodes,
// each with a volume of its own, watched by three Sentinels beside them;
// the app finds the primary through the Sentinels and waits for a replica.
func TestSwarmRedisIsReplicatedWithSentinels(t *testing.T) {
	r := mustRun(t, "prod", swarmConfig())
	redisNames := []string{"redis", "redis-2", "redis-3"}
	sentinels := []string{"sentinel-1", "sentinel-2", "sentinel-3"}
	volumes := map[string]bool{}
	for i, name := range redisNames {
		res := r.named("tally-prod-" + name)
		if res.name == "" {
			t.Fatalf("no service tally-prod-%s", name)
		}
		svc := decode[serviceInputs](t, res)
		spec := svc.TaskSpec.ContainerSpec
		if want := "node.labels.tally." + name + "==true"; !slices.Equal(svc.TaskSpec.Placement.Constraints, []string{want}) {
			t.Errorf("%s placed by %v, want %s", name, svc.TaskSpec.Placement.Constraints, want)
		}
		if svc.Mode.Replicated.Replicas != 1 || svc.UpdateConfig.Order != "stop-first" {
			t.Errorf("%s: %d tasks, %s: want one, stop-first (its volume)", name, svc.Mode.Replicated.Replicas, svc.UpdateConfig.Order)
		}
		for _, m := range spec.Mounts {
			if m.Type == "volume" && m.Target == "/data" {
				volumes[m.Source] = true
			}
		}
		if nets := svc.TaskSpec.NetworksAdvanceds; len(nets) != 1 || !slices.Equal(nets[0].Aliases, []string{name}) {
			t.Errorf("%s on networks %v; want the backend alone, as %s", name, nets, name)
		}
		if env := spec.Env; env["TALLY_REDIS_SELF"] != name || env["TALLY_REDIS_FIRST"] != "redis" || env["TALLY_SENTINELS"] != strings.Join(sentinels, " ") {
			t.Errorf("%s's environment %v: want itself, the first Redis and the Sentinels named", name, env)
		}
		// The replicated start runs before start.sh's text, in one shell.
		if args := spec.Args; len(args) != 4 || !strings.Contains(args[2], "get-master-addr-by-name") || !strings.Contains(args[2], "exec redis-server") {
			t.Errorf("%s's command does not ask the Sentinels and then start Redis: %q", name, args)
		}
		if i > 0 {
			expectDependsOn(t, res, "tally-prod-"+redisNames[i-1])
		}
	}
	if len(volumes) != len(redisNames) {
		t.Errorf("the Redis services mount %d data volumes (%v); want one each", len(volumes), volumes)
	}
	for k, name := range sentinels {
		res := r.named("tally-prod-" + name)
		svc := decode[serviceInputs](t, res)
		spec := svc.TaskSpec.ContainerSpec
		if want := "node.labels.tally." + redisNames[k] + "==true"; !slices.Equal(svc.TaskSpec.Placement.Constraints, []string{want}) {
			t.Errorf("%s placed by %v, want beside %s (%s)", name, svc.TaskSpec.Placement.Constraints, redisNames[k], want)
		}
		if len(spec.Secrets) != 1 || spec.Secrets[0].FileName != passwordPath {
			t.Errorf("%s reads secrets %v; want the password file", name, spec.Secrets)
		}
		if env := spec.Env; env["TALLY_SENTINEL_SELF"] != name || env["TALLY_SENTINEL_QUORUM"] != "2" {
			t.Errorf("%s's environment %v", name, env)
		}
		// One Sentinel at a time, after every Redis.
		prev := "tally-prod-redis-3"
		if k > 0 {
			prev = "tally-prod-" + sentinels[k-1]
		}
		expectDependsOn(t, res, prev)
	}

	web := r.named("tally-prod-web")
	env := decode[serviceInputs](t, web).TaskSpec.ContainerSpec.Env
	if env["REDIS_SENTINELS"] != "sentinel-1:26379,sentinel-2:26379,sentinel-3:26379" || env["REDIS_MASTER_NAME"] != "tally" || env["REDIS_WAIT_REPLICAS"] != "1" {
		t.Errorf("web's environment %v: want the Sentinels, the primary's name and WAIT 1", env)
	}
	if _, ok := env["REDIS_ADDR"]; ok {
		t.Errorf("web is given REDIS_ADDR beside REDIS_SENTINELS (the app refuses both)")
	}
	expectDependsOn(t, web, "tally-prod-sentinel-3")
	expectHardened(t, servicesRunning(t, r), func(name string) bool { return name == "tally-prod-web" })
}

// tally:redisReplicas 0 is the swarm stack as it was before replicas: one
// Redis, reached by name, with no Sentinel.
func TestSwarmWithoutRedisReplicas(t *testing.T) {
	r := mustRun(t, "prod", swarmConfig("tally:redisReplicas", "0"))
	for _, res := range r.byType(serviceType) {
		if strings.Contains(res.name, "sentinel") || strings.HasPrefix(res.name, "tally-prod-redis-") {
			t.Errorf("a swarm without replicas declares %s", res.name)
		}
	}
	redis := decode[serviceInputs](t, r.named("tally-prod-redis")).TaskSpec.ContainerSpec
	if strings.Contains(redis.Args[2], "get-master-addr-by-name") {
		t.Errorf("the single Redis runs the replicated start")
	}
	env := decode[serviceInputs](t, r.named("tally-prod-web")).TaskSpec.ContainerSpec.Env
	if env["REDIS_ADDR"] != "redis:6379" || env["REDIS_SENTINELS"] != "" {
		t.Errorf("web's environment %v: want REDIS_ADDR alone", env)
	}
}

func TestRedisReplicasConfig(t *testing.T) {
	for _, c := range []struct {
		config []string
		want   string
	}{
		{[]string{"tally:redisReplicas", "1"}, "0 on one engine"},
		{[]string{"tally:target", "swarm", "tally:registry", "r.example.com", "tally:redisReplicas", "5"}, "from 0 to 4"},
		{[]string{"tally:target", "swarm", "tally:registry", "r.example.com", "tally:redisReplicas", "two"}, "from 0 to 4"},
	} {
		_, err := runProgram(t, "prod", with(testConfig(), c.config...), repoFiles(t))
		if err == nil || !strings.Contains(err.Error(), "tally:redisReplicas") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v; want an error naming tally:redisReplicas, saying %q", c.config, err, c.want)
		}
	}
}

// Before anything is deployed, the swarm's nodes must carry the labels
// that give each Redis and Sentinel a node of its own.
func TestCheckPlacement(t *testing.T) {
	node := func(name string, labels ...string) swarmNode {
		n := swarmNode{Name: name, Labels: map[string]string{}}
		for _, l := range labels {
			n.Labels[l] = "true"
		}
		return n
	}
	good := []swarmNode{node("a", "tally.redis"), node("b", "tally.redis-2"), node("c", "tally.redis-3"), node("d")}
	for _, c := range []struct {
		name     string
		replicas int
		nodes    []swarmNode
		want     []string // in the error; none for no error
	}{
		{"three labelled nodes", 2, good, nil},
		{"no replicas need no labels", 0, []swarmNode{node("a")}, nil},
		{"a label missing", 2, good[:2], []string{"no node is labelled tally.redis-3=true", "--label-add tally.redis-3=true", "tally:redisReplicas 0"}},
		{"a label on two nodes", 2, append(slices.Clone(good), node("e", "tally.redis-2")), []string{"tally.redis-2=true is on 2 nodes (b, e)"}},
		{"two labels on one node", 2, []swarmNode{node("a", "tally.redis", "tally.redis-2"), node("c", "tally.redis-3")}, []string{"a has both tally.redis and tally.redis-2"}},
		// Two Redis: the third Sentinel needs a node of its own.
		{"one replica, no third node for a Sentinel", 1, good[:2], []string{"no node is labelled tally.sentinel-3=true"}},
		{"one replica and a Sentinel's node", 1, []swarmNode{good[0], good[1], node("c", "tally.sentinel-3")}, nil},
	} {
		err := checkPlacement(c.replicas, c.nodes)
		if c.want == nil {
			if err != nil {
				t.Errorf("%s: %v; want none", c.name, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %v; want it to say %q", c.name, err, w)
			}
		}
	}
}
