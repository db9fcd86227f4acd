package stack

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// On a swarm, Redis is a primary and tally:redisReplicas replicas, each a
// service of its own pinned to a node of its own (a volume is one node's),
// and three Sentinels, which promote a replica when the primary is lost;
// the app finds the primary through them (REDIS_SENTINELS) and
// acknowledges a visit once a replica has it (WAIT). Everything is found
// by name on the overlay, as Swarm's DNS serves it: redis, redis-2, …,
// sentinel-1, …
//
// The first Redis keeps the single Redis's role, node label, volume and
// resource name, so a swarm deployed without replicas keeps its count.

// defaultSwarmRedisReplicas is two, not one: a replica promoted with none
// of its own could take no visit (min-replicas-to-write 1) until the lost
// node came back.
const defaultSwarmRedisReplicas = 2

// maxRedisReplicas bounds tally:redisReplicas: each is a full copy.
const maxRedisReplicas = 4

// Sentinel: three, on three nodes, so one lost still leaves a majority to
// agree on a failover (the quorum, and the election's).
const (
	sentinelCount  = 3
	sentinelQuorum = 2
	sentinelPort   = 26379
	masterName     = "tally"
	// How long the primary may not answer before it is lost: short enough
	// for counting to resume within 10 s, long enough that a busy node's
	// pause is not a failover.
	downAfter = 3 * time.Second
	// How long one failover may take before another is tried.
	failoverTimeout = 10 * time.Second
)

// redisReplicas is tally:redisReplicas, checked: a swarm's default is
// defaultSwarmRedisReplicas; one engine has no other node to keep a copy
// on.
func redisReplicas(target, value string, bad func(key, value, want string)) int {
	def := 0
	if target == "swarm" {
		def = defaultSwarmRedisReplicas
	}
	if value == "" {
		return def
	}
	n, err := strconv.Atoi(value)
	switch {
	case err != nil || n < 0 || n > maxRedisReplicas:
		bad("redisReplicas", value, fmt.Sprintf("a whole number from 0 to %d", maxRedisReplicas))
		return def
	case n > 0 && target != "swarm":
		bad("redisReplicas", value, "0 on one engine, whose replicas would share its disk (tally:target=swarm puts each on a node of its own; here, make backup keeps a copy)")
		return 0
	}
	return n
}

// redisName is the i-th Redis's role and name on the network (from 1):
// redis, redis-2, redis-3, …
func redisName(i int) string {
	if i == 1 {
		return redisRole
	}
	return fmt.Sprintf("%s-%d", redisRole, i)
}

func sentinelName(k int) string { return fmt.Sprintf("sentinel-%d", k) }

// nodeLabel is the node label that places a Redis or a Sentinel:
// tally.redis (the one a single Redis had), tally.redis-2, …
func nodeLabel(name string) string { return "tally." + name }

func constraint(name string) string { return "node.labels." + nodeLabel(name) + "==true" }

// sentinelNode is the name whose node label places Sentinel k: the node of
// the k-th Redis while there is one, so three Redis need no other label.
func sentinelNode(k, redisCount int) string {
	if k <= redisCount {
		return redisName(k)
	}
	return sentinelName(k)
}

// placementLabels are the node labels a replicated stack needs, one node
// each: the Redis's and those of the Sentinels that have no Redis beside
// them.
func placementLabels(replicas int) []string {
	var labels []string
	for i := 1; i <= 1+replicas; i++ {
		labels = append(labels, nodeLabel(redisName(i)))
	}
	for k := 1; k <= sentinelCount; k++ {
		if name := sentinelNode(k, 1+replicas); !slices.Contains(labels, nodeLabel(name)) {
			labels = append(labels, nodeLabel(name))
		}
	}
	return labels
}

// replicated turns the single Redis into the first of 1+replicas, and
// adds the Sentinels after them; what runs each is the first's.
func replicated(first service, replicas int, files Files) []service {
	redisNames, sentinels := []string{}, []string{}
	for i := 1; i <= 1+replicas; i++ {
		redisNames = append(redisNames, redisName(i))
	}
	for k := 1; k <= sentinelCount; k++ {
		sentinels = append(sentinels, sentinelName(k))
	}
	common := []string{
		"TALLY_REDIS_FIRST=" + redisRole,
		"TALLY_SENTINELS=" + strings.Join(sentinels, " "),
		"TALLY_MASTER_NAME=" + masterName,
	}
	var svcs []service
	for i, name := range redisNames {
		r := first
		r.role = name
		r.placement = constraint(name)
		r.command = []string{"sh", "-c", files.RedisReplica + files.RedisStart, "redis-start"}
		r.env = slices.Concat(first.env, common, []string{"TALLY_REDIS_SELF=" + name})
		r.networks = []attachment{{backend, name}}
		r.stackDNS = true
		if i > 0 {
			// One at a time: a change never restarts two copies at once.
			r.waitsFor = []string{redisNames[i-1]}
		}
		svcs = append(svcs, r)
	}
	waitFor := redisNames[len(redisNames)-1]
	for k, name := range sentinels {
		svcs = append(svcs, service{
			role:     name,
			image:    first.image,
			replicas: 1, replace: stopFirst, // one at a time: a majority always watches
			placement: constraint(sentinelNode(k+1, len(redisNames))),
			waitsFor:  []string{waitFor},
			user:      first.user,
			command:   []string{"sh", "-c", files.RedisSentinel, "redis-sentinel"},
			env: slices.Concat(first.env, common, []string{
				"TALLY_SENTINEL_SELF=" + name,
				"TALLY_REDIS=" + strings.Join(redisNames, " "),
				fmt.Sprintf("TALLY_SENTINEL_QUORUM=%d", sentinelQuorum),
				fmt.Sprintf("TALLY_DOWN_AFTER_MS=%d", downAfter.Milliseconds()),
				fmt.Sprintf("TALLY_FAILOVER_TIMEOUT_MS=%d", failoverTimeout.Milliseconds()),
			}),
			health:   []string{"CMD-SHELL", fmt.Sprintf(`REDISCLI_AUTH="$(cat "$REDIS_PASSWORD_FILE")" redis-cli -p %d ping | grep -q PONG`, sentinelPort)},
			retries:  5,
			memoryMB: 32,
			cpus:     1,
			pids:     32,
			// Nothing to save (its config is in memory: redis/sentinel.sh
			// says why), but a swarm's delete waits within the grace period
			// for the task's container to go, which neither 5 s nor 10 s
			// gave sentinel-1 on the lab's busy manager in a full run.
			stopGrace: 30,
			password:  true,
			networks:  []attachment{{backend, name}},
			stackDNS:  true,
		})
		// One at a time too: a majority always watches.
		waitFor = name
	}
	return svcs
}

// appRedisEnv is how the app finds Redis: through the Sentinels when
// there are replicas, each visit then acknowledged once one has it.
func appRedisEnv(replicas int) []string {
	if replicas == 0 {
		return []string{fmt.Sprintf("REDIS_ADDR=%s:%d", redisAlias, redisPort)}
	}
	var addrs []string
	for k := 1; k <= sentinelCount; k++ {
		addrs = append(addrs, fmt.Sprintf("%s:%d", sentinelName(k), sentinelPort))
	}
	return []string{"REDIS_SENTINELS=" + strings.Join(addrs, ","), "REDIS_MASTER_NAME=" + masterName, "REDIS_WAIT_REPLICAS=1"}
}

// swarmNode is a node of a swarm as CheckSwarmNodes needs it.
type swarmNode struct {
	Name   string
	Labels map[string]string
}

// checkPlacement says what keeps a replicated stack's Redis and Sentinels
// from each having a node of its own: a label no node has, a label on two
// nodes (which one holds the data?), two on one node (one lost node would
// take two copies).
func checkPlacement(replicas int, nodes []swarmNode) error {
	if replicas == 0 {
		return nil
	}
	var problems []string
	holder := map[string]string{} // node → the label it holds
	for _, label := range placementLabels(replicas) {
		var on []string
		for _, n := range nodes {
			if n.Labels[label] == "true" {
				on = append(on, n.Name)
			}
		}
		switch {
		case len(on) == 0:
			problems = append(problems, fmt.Sprintf("no node is labelled %s=true", label))
		case len(on) > 1:
			problems = append(problems, fmt.Sprintf("%s=true is on %d nodes (%s); want one", label, len(on), strings.Join(on, ", ")))
		case holder[on[0]] != "":
			problems = append(problems, fmt.Sprintf("%s has both %s and %s", on[0], holder[on[0]], label))
		default:
			holder[on[0]] = label
		}
	}
	if problems == nil {
		return nil
	}
	var cmds []string
	for _, label := range placementLabels(replicas) {
		cmds = append(cmds, "docker node update --label-add "+label+"=true NODE")
	}
	return fmt.Errorf("tally:redisReplicas = %d puts each Redis and Sentinel on a node of its own, by label: %s. Label %d different nodes (%s), or set tally:redisReplicas 0 for one Redis with no failover",
		replicas, strings.Join(problems, "; "), len(placementLabels(replicas)), strings.Join(cmds, "; "))
}
