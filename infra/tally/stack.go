package tally

import "github.com/pulumi/pulumi/sdk/v3/go/pulumi"

// NewStack declares the stack on the target cfg names (tally:target) and
// returns the outputs to export: url, redisVolume and networks for both,
// with webContainers on one engine and services on a swarm.
func NewStack(ctx *pulumi.Context, cfg Config, files Files) (pulumi.Map, error) {
	if cfg.Target == "swarm" {
		s, err := NewSwarmStack(ctx, "tally", cfg, files)
		if err != nil {
			return nil, err
		}
		return s.outputs(), nil
	}
	s, err := NewDockerStack(ctx, "tally", cfg, files)
	if err != nil {
		return nil, err
	}
	return s.outputs(), nil
}
