package proxy

import (
	"sync"

	"mxedge/proxy/sockio"
)

// splitter lets a socket's reader share a large batch with a helper goroutine. One reader per
// socket is the cheapest way to read (docs/performance.md), but the requests answered on the reader
// (local MAB and PAP, see Router.ServeRADIUS) then use one core. A batch of at least SplitBatch
// datagrams says the reader is falling behind: it hands the second half to the helper, handles the
// first half itself, and waits for the helper before reading into the batch's buffers again. A
// small batch, the common case below saturation, costs nothing more than before. Off by default
// (ServerOptions.SplitBatch).
//
// Only authentication sockets split: the order of accounting requests is kept by handling them in
// the order they were read.
type splitter struct {
	jobs chan splitJob
	wg   sync.WaitGroup
}

type splitJob struct {
	sk   *udpSock
	ds   []sockio.Datagram
	done chan struct{}
}

// startSplitter starts n helpers serving s; stop them with stop.
func startSplitter(s *Server, n int) *splitter {
	sp := &splitter{jobs: make(chan splitJob)}
	for range n {
		sp.wg.Add(1)
		go func() {
			defer sp.wg.Done()
			var w udpWriter
			for j := range sp.jobs {
				s.acceptBatch(j.sk, j.ds, &w)
				j.done <- struct{}{}
			}
		}()
	}
	return sp
}

// stop ends the helpers once no reader uses them any more, and waits for them.
func (sp *splitter) stop() {
	close(sp.jobs)
	sp.wg.Wait()
}

// handle runs ds through Accept, sharing it with a helper when it is large enough; done is the
// reader's channel for the helper's completion.
func (sp *splitter) handle(s *Server, sk *udpSock, ds []sockio.Datagram, w *udpWriter, done chan struct{}) {
	if sp == nil || sk.port != PortAuth || len(ds) < s.opts.SplitBatch {
		s.acceptBatch(sk, ds, w)
		return
	}
	half := len(ds) / 2
	select {
	case sp.jobs <- splitJob{sk: sk, ds: ds[half:], done: done}:
	default:
		// Every helper is busy with another reader's batch: no waiting for one.
		s.acceptBatch(sk, ds, w)
		return
	}
	s.acceptBatch(sk, ds[:half], w)
	<-done
}
