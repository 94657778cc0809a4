package identity

import (
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestOpenAPISchema keeps docs/api/openapi.yaml's IdentityBatch and IdentityEvent equal to the
// JSON the https sink sends.
func TestOpenAPISchema(t *testing.T) {
	raw, err := os.ReadFile("../../docs/api/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Required   []string `yaml:"required"`
				Properties map[string]struct {
					Enum []string `yaml:"enum"`
				} `yaml:"properties"`
			} `yaml:"schemas"`
		} `yaml:"components"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]any{"IdentityBatch": Batch{}, "IdentityEvent": Event{}} {
		var fields, required, props []string
		rt := reflect.TypeOf(v)
		for i := range rt.NumField() {
			tag, opts, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
			fields = append(fields, tag)
			if !strings.Contains(opts, "omitempty") {
				required = append(required, tag)
			}
		}
		s := doc.Components.Schemas[name]
		for p := range s.Properties {
			props = append(props, p)
		}
		slices.Sort(fields)
		slices.Sort(props)
		slices.Sort(required)
		want := slices.Clone(s.Required)
		slices.Sort(want)
		if !slices.Equal(fields, props) {
			t.Errorf("schema %s has %v, the Go type %v", name, props, fields)
		}
		if !slices.Equal(required, want) {
			t.Errorf("schema %s requires %v, the Go type always sends %v", name, want, required)
		}
	}
	ev := doc.Components.Schemas["IdentityEvent"].Properties
	for _, k := range Kinds {
		if !slices.Contains(ev["type"].Enum, k.String()) {
			t.Errorf("type %s not in the enum", k)
		}
	}
	for _, r := range []string{ReasonStart, ReasonAddressLearned, ReasonAddressChanged, ReasonReauth, ReasonStop, ReasonExpired} {
		if !slices.Contains(ev["reason"].Enum, r) {
			t.Errorf("reason %s not in the enum", r)
		}
	}
	if got := doc.Components.Schemas["IdentityBatch"].Properties["schema"].Enum; !slices.Equal(got, []string{Schema}) {
		t.Errorf("schema enum %v", got)
	}
}
