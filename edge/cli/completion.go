package cli

import (
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"mxedge/cache"
	"mxedge/edge/config"
	"mxedge/edge/mgmt"
)

// Shell completion of flag values (cobra's `mxedge completion bash|zsh|fish`, installed by the
// .deb). NAS names and sites come from the running daemon's control socket, else from the
// configuration file; cached MACs only from the daemon (with none the shell completes nothing).

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

// completeNAS completes --nas with the NAS client names the running daemon knows, else those of
// the configuration file.
func completeNAS(socket *string, env opsEnv) cobra.CompletionFunc {
	return func(cmd *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
		cs, err := dialDaemon(*socket, env).Clients(cmd.Context())
		if err != nil {
			return configNames(env).Clients, cobra.ShellCompDirectiveNoFileComp
		}
		var names []string
		for _, c := range cs {
			names = append(names, c.Name+"\t"+c.Address)
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}

// configNames reads the names of the configuration run would use; an unreadable file gives none.
func configNames(env opsEnv) config.Names {
	path := env.configPath
	if path == "" {
		p, _, err := mgmt.ConfigPath(mgmt.DefaultStateDir, DefaultConfigPath, false)
		if err != nil {
			return config.Names{}
		}
		path = p
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return config.Names{}
	}
	return config.ReadNames(b)
}

// completeSites completes a site name from the NAS clients of the running daemon, else of the
// configuration file.
func completeSites(socket *string, env opsEnv) cobra.CompletionFunc {
	return func(cmd *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
		cs, err := dialDaemon(*socket, env).Clients(cmd.Context())
		if err != nil {
			return configNames(env).Sites, cobra.ShellCompDirectiveNoFileComp
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
