// The tally Pulumi program: `pulumi up` deploys tally to the Docker host in
// the stack's config. See README.md ("Deploy with Pulumi").
package main

import (
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"tally/infra/stack"
)

func main() {
	pulumi.Run(func(ctx *pulumi.Context) error {
		// Pulumi runs the program in infra/; the repository is its parent.
		files, err := stack.ReadFiles("..")
		if err != nil {
			return err
		}
		cfg, err := stack.LoadConfig(ctx, files.Images)
		if err != nil {
			return err
		}
		if err := stack.CheckEngine(ctx.Context(), cfg); err != nil {
			return err
		}
		if err := stack.CheckSwarmNodes(ctx.Context(), cfg); err != nil {
			return err
		}
		outputs, err := stack.New(ctx, cfg, files)
		if err != nil {
			return err
		}
		for name, value := range outputs {
			ctx.Export(name, value)
		}
		return nil
	})
}
