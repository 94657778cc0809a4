package edge

import (
	"crypto/rand"
	"fmt"

	"mxedge/edge/config"
	"mxedge/proxy"
)

// newRoutes builds the route table of b (nil when b has no routes). Its pools put the edge's one
// Proxy-State prefix in what they forward, as the default pool does, so a request that comes back
// through any of them is refused as a loop.
func (e *Edge) newRoutes(b *config.Built) (*proxy.RouteTable, error) {
	if len(b.Routes.Routes) == 0 {
		return nil, nil
	}
	ro := b.Routes
	ro.Logger, ro.ProxyStatePrefix = e.log, e.psPrefix
	pools := make([]proxy.NamedPool, len(ro.Pools))
	for i, np := range ro.Pools {
		np.Options.Logger, np.Options.Cork = e.log, e.cork
		np.Options.Resolver = resolverAdapter{e.resolver}
		pools[i] = np
	}
	ro.Pools = pools
	t, err := proxy.NewRouteTable(ro)
	if err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	return t, nil
}

// newProxyStatePrefix is the edge's Proxy-State prefix for the lifetime of the process.
func newProxyStatePrefix() [4]byte {
	var p [4]byte
	rand.Read(p[:])
	return p
}
