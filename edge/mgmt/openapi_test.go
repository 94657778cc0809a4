package mgmt_test

import (
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"mxedge/edge/mgmt"
)

// TestOpenAPIMatchesClient keeps docs/api/openapi.yaml honest: it names exactly the paths and
// error codes the client uses.
func TestOpenAPIMatchesClient(t *testing.T) {
	raw, err := os.ReadFile("../../docs/api/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OpenAPI    string                    `yaml:"openapi"`
		Paths      map[string]map[string]any `yaml:"paths"`
		Components struct {
			Schemas map[string]struct {
				Properties map[string]struct {
					Enum []string `yaml:"enum"`
				} `yaml:"properties"`
			} `yaml:"schemas"`
		} `yaml:"components"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi %q", doc.OpenAPI)
	}
	var got []string
	for p := range doc.Paths {
		got = append(got, p)
	}
	sort.Strings(got)
	want := []string{mgmt.PathPing, mgmt.PathRegister, mgmt.PathClients("{id}"), mgmt.PathConfig("{id}"), mgmt.PathRenew("{id}"), mgmt.PathCertificates("{id}")}
	sort.Strings(want)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("paths %v, want %v", got, want)
	}
	// Every wire struct's JSON fields are exactly the schema's properties.
	for name, v := range map[string]any{"Ping": mgmt.Ping{}, "Facts": mgmt.Facts{}, "RegisterRequest": mgmt.RegisterRequest{},
		"RegisterResponse": mgmt.RegisterResponse{}, "Upstream": mgmt.Upstream{}, "RenewRequest": mgmt.RenewRequest{},
		"RenewResponse": mgmt.RenewResponse{}, "Error": mgmt.ErrorBody{}, "ServerCertificates": mgmt.ServerCertificates{}} {
		var fields, props []string
		rt := reflect.TypeOf(v)
		for i := range rt.NumField() {
			tag, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
			fields = append(fields, tag)
		}
		for p := range doc.Components.Schemas[name].Properties {
			props = append(props, p)
		}
		sort.Strings(fields)
		sort.Strings(props)
		if strings.Join(fields, " ") != strings.Join(props, " ") {
			t.Errorf("schema %s has %v, the Go type %v", name, props, fields)
		}
	}
	codes := doc.Components.Schemas["Error"].Properties["code"].Enum
	for _, c := range []string{mgmt.CodeBadRequest, mgmt.CodeInvalidCode, mgmt.CodeExpiredCode, mgmt.CodeUsedCode,
		mgmt.CodeUnauthenticated, mgmt.CodeForbidden, mgmt.CodeNotFound, mgmt.CodeInternal, mgmt.CodeUnavailable} {
		if !strings.Contains(" "+strings.Join(codes, " ")+" ", " "+c+" ") {
			t.Errorf("error code %q is not in the OpenAPI enum %v", c, codes)
		}
	}
}
