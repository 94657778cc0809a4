package cli

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// newGenManCmd writes the man pages of the command tree: packaging/build-deb.sh runs it on the
// binary it packages, so the pages always describe the commands and flags that ship. Hidden: it is a
// build step, not an operator command.
func newGenManCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "gen-man DIR",
		Short:  "Write a man page (section 1) for every command into DIR",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := os.MkdirAll(args[0], 0o755); err != nil {
				return fmt.Errorf("gen-man: %w", err)
			}
			root := cmd.Root()
			// No "Auto generated … on DATE" history: the date comes from SOURCE_DATE_EPOCH (cobra/doc
			// reads it), so two builds of one commit give the same pages.
			root.DisableAutoGenTag = true
			header := &doc.GenManHeader{Title: "MXEDGE", Section: "1", Source: "mxedge", Manual: "mxedge manual"}
			if err := doc.GenManTree(root, header, args[0]); err != nil {
				return fmt.Errorf("gen-man: %w", err)
			}
			return nil
		},
	}
}
