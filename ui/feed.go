package ui

import (
	"sync"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/wsc-project/wsc/station"
)

// Feed carries station events to the operator view without making the
// station wait for the screen. A bubbletea program's Send blocks until the
// program takes the message, and the program takes none while it draws a
// frame: called from the station's Events hook, it put every frame's drawing
// time into the provisioning of the device that sent the event. Event only
// queues (in order) and returns; one goroutine hands the queue to the program,
// all events that piled up during a frame in one EventBatchMsg, so the view
// draws once per batch rather than once per event.
type Feed struct {
	send func(tea.Msg)
	mu   sync.Mutex
	q    []station.Event
	wake chan struct{}
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// NewFeed starts a feed delivering to send (usually a tea.Program's Send).
// Close stops it.
func NewFeed(send func(tea.Msg)) *Feed {
	f := &Feed{send: send, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go f.loop()
	return f
}

// Event queues e for the view; it never blocks on the view.
func (f *Feed) Event(e station.Event) {
	f.mu.Lock()
	f.q = append(f.q, e)
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// Close delivers what is queued and stops the feed.
func (f *Feed) Close() {
	f.once.Do(func() { close(f.stop) })
	<-f.done
}

func (f *Feed) loop() {
	defer close(f.done)
	for {
		select {
		case <-f.wake:
		case <-f.stop:
			f.flush()
			return
		}
		f.flush()
	}
}

func (f *Feed) flush() {
	f.mu.Lock()
	q := f.q
	f.q = nil
	f.mu.Unlock()
	switch len(q) {
	case 0:
	case 1:
		f.send(EventMsg(q[0]))
	default:
		f.send(EventBatchMsg(q))
	}
}
