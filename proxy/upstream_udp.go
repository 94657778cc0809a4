package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"mxedge/proxy/packet"
	"mxedge/proxy/radsec"
	"mxedge/proxy/udpup"
)

// DefaultUDPPort is a RADIUS/UDP upstream's default port (RFC 2865 §3).
const DefaultUDPPort = 1812

// UDPOptions make an upstream RADIUS over UDP (proxy/udpup), as the national roaming servers of a
// federation such as eduroam speak it. Its Host must be an IP address and its Secret is required;
// Status-Server, dead detection (DeadAfter, StatusInterval) and re-keying are as for RadSec.
type UDPOptions struct {
	Source           netip.Addr    // local address requests leave from; zero: the kernel's choice
	AcctPort         uint16        // where Accounting-Requests go (RFC 2866 §3: 1813); 0: no accounting
	SourcePorts      int           // default 4: 1024 requests outstanding
	RetransmitAfter  time.Duration // default 2s (RFC 5080 §2.2.1: same identifier and authenticator)
	MaxTransmissions int           // default 3, the first included
	// AllowMissingMA accepts Access-* replies without Message-Authenticator. Default false
	// (BlastRADIUS); only for a server that cannot send one.
	AllowMissingMA bool
}

func (o *UpstreamOptions) validateUDP() error {
	ip, err := netip.ParseAddr(o.Host)
	if err != nil {
		return fmt.Errorf("proxy: upstream %q: a RADIUS/UDP upstream needs an IP address, not %q", o.Name, o.Host)
	}
	if len(o.Secret) == 0 {
		return fmt.Errorf("proxy: upstream %q: a RADIUS/UDP upstream needs a shared secret", o.Name)
	}
	if o.BindDevice != "" {
		return fmt.Errorf("proxy: upstream %q: bind_device is not supported for RADIUS/UDP upstreams (use source)", o.Name)
	}
	port := o.Port
	if port == 0 {
		port = DefaultUDPPort
	}
	uo := o.udpupOptions(netip.AddrPortFrom(ip.Unmap(), port))
	if err := uo.Validate(); err != nil {
		return fmt.Errorf("proxy: upstream %q: %w", o.Name, err)
	}
	return nil
}

func (o *UpstreamOptions) udpupOptions(server netip.AddrPort) udpup.Options {
	src := o.UDP.Source
	if !src.IsValid() {
		src = o.Source // the pool's or upstream's source address, as for RadSec
	}
	return udpup.Options{
		Server:           server,
		Secret:           o.Secret,
		Source:           src,
		SourcePorts:      o.UDP.SourcePorts,
		RetransmitAfter:  o.UDP.RetransmitAfter,
		MaxTransmissions: o.UDP.MaxTransmissions,
		StatusInterval:   o.StatusInterval,
		DeadAfter:        o.DeadAfter,
		AllowMissingMA:   o.UDP.AllowMissingMA,
	}
}

// newUDP creates the upstream's RADIUS/UDP client (NewPool, after setDefaults).
func (u *Upstream) newUDP() error {
	if u.opts.UDP.SourcePorts == 0 {
		u.opts.UDP.SourcePorts = udpup.DefaultSourcePorts
	}
	ip, err := netip.ParseAddr(u.opts.Host)
	if err != nil {
		return fmt.Errorf("proxy: upstream %q: %w", u.opts.Name, err)
	}
	server := netip.AddrPortFrom(ip.Unmap(), u.opts.Port)
	o := u.opts.udpupOptions(server)
	o.Observer = udpObserver{u}
	o.Logger = u.logger
	o.Now = u.pool.opts.Now
	c, err := udpup.New(o)
	if err != nil {
		return fmt.Errorf("proxy: upstream %q: %w", u.opts.Name, err)
	}
	u.udp = c
	u.addr = server
	if u.opts.UDP.AcctPort != 0 {
		ao := u.opts.udpupOptions(netip.AddrPortFrom(ip.Unmap(), u.opts.UDP.AcctPort))
		ao.Observer = udpAcctObserver{u}
		ao.Logger = u.logger
		ao.Now = u.pool.opts.Now
		if u.udpAcct, err = udpup.New(ao); err != nil {
			return fmt.Errorf("proxy: upstream %q: accounting: %w", u.opts.Name, err)
		}
	}
	return nil
}

// runUDP runs the client until ctx ends; its watchdog moves the upstream up and down.
func (u *Upstream) runUDP(ctx context.Context) {
	done := make(chan struct{})
	if u.udpAcct != nil {
		go func() {
			defer close(done)
			if err := u.udpAcct.Run(ctx); err != nil {
				u.logger.Error("udp upstream cannot open its sockets", "upstream", u.opts.Name, "err", err)
			}
		}()
	} else {
		close(done)
	}
	if err := u.udp.Run(ctx); err != nil {
		u.setState(StateDown, err)
		u.logger.Error("udp upstream cannot open its sockets", "upstream", u.opts.Name, "err", err)
	}
	<-done
}

// udpAcctObserver hears the accounting port's client: its answers count like the others, but only
// the authentication port says whether the upstream is up.
type udpAcctObserver struct{ u *Upstream }

func (o udpAcctObserver) Up()                 {}
func (o udpAcctObserver) Down(error)          {}
func (o udpAcctObserver) RTT(d time.Duration) { o.u.observeRTT(d) }
func (o udpAcctObserver) Probe(bool)          {}
func (o udpAcctObserver) Discarded(err error) { connObserver(o).Discarded(err) }

// udpObserver turns the client's reports into the upstream's state and the pool's health.
type udpObserver struct{ u *Upstream }

func (o udpObserver) Up()                 { o.u.setState(StateUp, nil) }
func (o udpObserver) Down(err error)      { o.u.setState(StateDown, err) }
func (o udpObserver) RTT(d time.Duration) { o.u.observeRTT(d) }
func (o udpObserver) Probe(ok bool)       { connObserver(o).Probe(ok) }
func (o udpObserver) Discarded(err error) { connObserver(o).Discarded(err) }

// udpTicket is a UDP transmission a NAS retransmission can repeat.
type udpTicket struct {
	c    *udpup.Client
	sent udpup.Sent
}

// send hands the attempt to u: its RadSec connections, or its UDP client.
func (a *attempt) send(u *Upstream) error {
	if u.udp == nil {
		return u.exchange(a.build, a.build11, a.req.Deadline, a.handle)
	}
	c := u.udp
	if a.req.Packet.Code() == packet.CodeAccountingRequest {
		if c = u.udpAcct; c == nil {
			return fmt.Errorf("%w: upstream %q takes no accounting", radsec.ErrConnDead, u.opts.Name)
		}
	}
	sent, err := c.Exchange(udpup.BuildFunc(a.build), a.req.Deadline, func(resp packet.Packet, err error) {
		a.handle(resp, udpErr(err))
	})
	if err != nil {
		return udpErr(err)
	}
	a.ticket.Store(&udpTicket{c: c, sent: sent})
	return nil
}

// retransmit passes a NAS retransmission on to the UDP upstream carrying the attempt; over RadSec
// (TCP) there is nothing to do (RFC 5080 §2.2.1 leaves retransmission to the transport).
func (a *attempt) retransmit() {
	if t := a.ticket.Load(); t != nil {
		t.c.Retransmit(t.sent)
	}
}

// udpErr maps the UDP client's errors onto the ones the pool and router already act on: retry on
// another upstream, time out, bad reply, build failure.
func udpErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, udpup.ErrDead), errors.Is(err, udpup.ErrBusy):
		return fmt.Errorf("%w: %w", radsec.ErrConnDead, err)
	case errors.Is(err, udpup.ErrClosed):
		return fmt.Errorf("%w: %w", radsec.ErrClosed, err)
	case errors.Is(err, udpup.ErrTimeout):
		return fmt.Errorf("%w: %w", radsec.ErrTimeout, err)
	case errors.Is(err, udpup.ErrBadReply):
		return fmt.Errorf("%w: %w", radsec.ErrBadReply, err)
	case errors.Is(err, udpup.ErrBuild):
		return fmt.Errorf("%w: %w", radsec.ErrBuild, err)
	}
	return err
}
