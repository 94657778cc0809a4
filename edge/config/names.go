package config

import (
	"slices"

	"go.yaml.in/yaml/v3"
)

// Names are the NAS client names and sites a configuration file's clients list, for shell completion when no
// daemon runs. Unlike Parse it validates nothing and reads no secret file: a file with errors still
// completes what it names.
type Names struct {
	Clients []string
	Sites   []string
}

// ReadNames extracts Names from the file's bytes; a file that is not YAML gives none.
func ReadNames(data []byte) Names {
	if len(data) > MaxFileSize {
		return Names{}
	}
	var f struct {
		Clients []struct {
			Name string `yaml:"name"`
			Site string `yaml:"site"`
		} `yaml:"clients"`
	}
	if yaml.Unmarshal(data, &f) != nil {
		return Names{}
	}
	var n Names
	add := func(name, site string) {
		if name != "" && !slices.Contains(n.Clients, name) {
			n.Clients = append(n.Clients, name)
		}
		if site != "" && !slices.Contains(n.Sites, site) {
			n.Sites = append(n.Sites, site)
		}
	}
	for _, c := range f.Clients {
		add(c.Name, c.Site)
	}
	slices.Sort(n.Sites)
	return n
}
