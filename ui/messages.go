package ui

import "github.com/wsc-project/wsc/station"

// EventMsg carries a station event into a model.
type EventMsg station.Event

// EventBatchMsg carries station events, in order, that arrived while the
// view was busy (Feed); the model applies each as an EventMsg and draws once.
type EventBatchMsg []station.Event

// ProgressMsg carries a set-up or background message; the bench view shows
// it on its notice line.
type ProgressMsg string

// DoneMsg tells the bench view that the run is over (wsc demo, once every
// slot has finished): the program quits.
type DoneMsg struct{}
