package survivability

import "fmt"

// maxAttrValue is the longest value one RADIUS attribute carries (RFC 2865 §5).
const maxAttrValue = 253

// Validate checks the configured values of the options (the default VLANs); NewAuthorizer also
// requires Cache, which is built, not configured.
func (o *AuthorizerOptions) Validate() error {
	for name, v := range map[string]string{"default MAB VLAN": o.DefaultMABVLAN, "default 802.1X VLAN": o.DefaultDot1XVLAN} {
		if len(v) > maxAttrValue {
			return fmt.Errorf("survivability: %s longer than %d octets", name, maxAttrValue)
		}
	}
	return nil
}
