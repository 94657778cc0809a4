package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"mxedge/edge"
	"mxedge/edge/config"
)

// printRoute parses a --route sample (KEY=VALUE,...) and prints the route it takes.
func printRoute(cmd *cobra.Command, cfg *config.Config, spec string) error {
	sample := map[string]string{}
	for _, kv := range strings.Split(spec, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || k == "" {
			return fmt.Errorf("%w: --route: %q is not KEY=VALUE", ErrUsage, kv)
		}
		sample[k] = strings.Trim(v, `"`)
	}
	explained, err := edge.ExplainRoute(cfg, sample)
	if err != nil {
		return fmt.Errorf("%w: --route: %w", ErrUsage, err)
	}
	_, err = fmt.Fprintf(cmd.OutOrStdout(), "route: %s\n", explained)
	return err
}
