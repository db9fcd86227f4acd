package stack

import (
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// names derives every Docker object's name from project and stack, so
// several stacks share one host without clashing: tally-dev-web-1.
type names struct{ project, stack string }

func namesFor(ctx *pulumi.Context) names { return names{ctx.Project(), ctx.Stack()} }

func (n names) of(parts ...string) string {
	return strings.Join(append([]string{n.project, n.stack}, parts...), "-")
}

// dataVolume is the volume that holds svc's data (at svc.dataDir).
func (n names) dataVolume(svc service) string { return n.of(svc.role, "data") }

// labels mark every object with its project, stack and role, for
// `docker ps --filter label=tally.stack=dev`.
func (n names) labels(role string) map[string]string {
	return map[string]string{"tally.project": n.project, "tally.stack": n.stack, "tally.role": role}
}
