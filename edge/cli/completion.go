package cli

import (
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"mxedge/cache"
)

// Shell completion of flag values (cobra's `mxedge completion bash|zsh|fish`, installed by the
// .deb). Values that only the running daemon knows (NAS names, cached MACs, sites) come from its
// control socket; with no daemon the shell completes nothing rather than guessing.

// maxCompletions bounds what one completion asks the daemon for: a shell offers a few hundred
// candidates at most, and a cache of a million entries must not be walked for a Tab.
const (
	maxCompletions = 500
	maxScanned     = 20000 // cache entries read for one completion
)

func fixedCompletions(values ...string) cobra.CompletionFunc {
	return func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return values, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeCacheMACs completes a MAC address from the cache of the running daemon, matching what
// was typed in any notation's prefix (lower case, colons).
func completeCacheMACs(socket *string, env opsEnv) cobra.CompletionFunc {
	return func(cmd *cobra.Command, _ []string, typed string) ([]string, cobra.ShellCompDirective) {
		prefix := strings.ToLower(typed)
		var out []string
		err := dialDaemon(*socket, env).CacheList(cmd.Context(), maxScanned, func(r cache.Record) bool {
			if r.MAC != "" && strings.HasPrefix(r.MAC, prefix) {
				out = append(out, r.MAC)
			}
			return len(out) < maxCompletions
		})
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		slices.Sort(out)
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeSites completes a site name from the NAS clients of the running daemon.
func completeSites(socket *string, env opsEnv) cobra.CompletionFunc {
	return func(cmd *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
		cs, err := dialDaemon(*socket, env).Clients(cmd.Context())
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var sites []string
		for _, c := range cs {
			if c.Site != "" && !slices.Contains(sites, c.Site) {
				sites = append(sites, c.Site)
			}
		}
		slices.Sort(sites)
		return sites, cobra.ShellCompDirectiveNoFileComp
	}
}
