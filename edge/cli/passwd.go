package cli

import (
	"bufio"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"mxedge/survivability"
)

// newPasswdCmd returns `mxedge passwd`: helpers for the local device-admin accounts file
// (survivability.local_accounts, docs/survivability.md "Password logins during an outage").
func newPasswdCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "passwd",
		Short: "Make password hashes for the local device-admin accounts file",
		Args:  pkiArgs(cobra.NoArgs),
		RunE:  pkiGroupHelp,
	}
	cmd.AddCommand(newPasswdHashCmd())
	return cmd
}

func newPasswdHashCmd() *cobra.Command {
	var user string
	var useBcrypt bool
	cmd := &cobra.Command{
		Use:   "hash",
		Short: "Hash a password read from standard input (argon2id, or bcrypt with --bcrypt)",
		Long: `hash reads one password from the first line of standard input (never from the command line,
where other users could see it) and prints its argon2id hash in the PHC string format
(m=64 MiB, t=3, p=4, RFC 9106), or a bcrypt hash (cost 10) with --bcrypt. With --user it prints
the whole accounts file line, user:hash.

  read -rs PW && printf '%s\n' "$PW" | mxedge passwd hash --user netadmin >> /etc/mxedge/admins`,
		Args: pkiArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if strings.ContainsAny(user, ":\n") {
				return pkiUsageErrorf("--user %q: a user name cannot contain ':' or a newline", user)
			}
			line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
			if err != nil && line == "" {
				return fmt.Errorf("passwd: no password on standard input: %w", err)
			}
			password := strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
			if password == "" {
				return errors.New("passwd: empty password")
			}
			var hash string
			if useBcrypt {
				if hash, err = survivability.HashBcrypt([]byte(password)); err != nil {
					return fmt.Errorf("passwd: %w", err)
				}
			} else {
				salt := make([]byte, 16)
				rand.Read(salt)
				hash = survivability.HashArgon2id([]byte(password), salt)
			}
			if user != "" {
				hash = user + ":" + hash
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), hash)
			return err
		},
	}
	cmd.Flags().StringVar(&user, "user", "", "print user:hash, a line of the accounts file")
	cmd.Flags().BoolVar(&useBcrypt, "bcrypt", false, "bcrypt (cost 10) instead of argon2id")
	return cmd
}
