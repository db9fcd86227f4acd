package stack

import "github.com/pulumi/pulumi/sdk/v3/go/pulumi"

// New declares the stack on the target cfg names (tally:target) and
// returns the outputs to export: url, redisVolume and networks for both,
// with webContainers on one engine and services on a swarm.
func New(ctx *pulumi.Context, cfg Config, files Files) (pulumi.Map, error) {
	return declare(ctx, cfg, files, services(cfg, files))
}

// declare declares svcs, the stack's services, on cfg's target.
func declare(ctx *pulumi.Context, cfg Config, files Files, svcs []service) (pulumi.Map, error) {
	if err := checkServices(svcs); err != nil {
		return nil, err
	}
	if cfg.Target == "swarm" {
		s, err := NewSwarm(ctx, "tally", cfg, files, svcs)
		if err != nil {
			return nil, err
		}
		return s.outputs(), nil
	}
	s, err := NewDocker(ctx, "tally", cfg, files, svcs)
	if err != nil {
		return nil, err
	}
	return s.outputs(), nil
}
