package identity

import "os"

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "-"
	}
	return h
}
