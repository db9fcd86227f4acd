package testkit

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
)

// TCPOpens is how many TCP connections the network namespace of process
// pid has opened (ActiveOpens) and accepted (PassiveOpens), from
// /proc/PID/net/snmp: for a container's process, whether its hops reuse
// their connections.
func TCPOpens(pid int) (opened, accepted int64, err error) {
	path := fmt.Sprintf("/proc/%d/net/snmp", pid)
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	var names []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 0 || f[0] != "Tcp:":
		case names == nil:
			names = f
		default:
			for i := 1; i < min(len(f), len(names)); i++ {
				n, _ := strconv.ParseInt(f[i], 10, 64)
				switch names[i] {
				case "ActiveOpens":
					opened = n
				case "PassiveOpens":
					accepted = n
				}
			}
			return opened, accepted, nil
		}
	}
	return 0, 0, fmt.Errorf("%s has no Tcp: counters", path)
}

// ContainerPID is the host PID of a running container's first process, on
// the engine docker reaches with dockerFlags (none: this machine's).
func ContainerPID(dockerFlags []string, id string) (int, error) {
	out, err := exec.Command("docker", append(slices.Clone(dockerFlags), "inspect", "-f", "{{.State.Pid}}", id)...).Output()
	if err != nil {
		return 0, fmt.Errorf("docker inspect %.12s: %w", id, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil || pid == 0 {
		return 0, fmt.Errorf("container %.12s is not running", id)
	}
	return pid, nil
}
