package testkit

import (
	"fmt"
	"os"
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
