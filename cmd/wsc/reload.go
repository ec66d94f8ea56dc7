package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/wsc-project/wsc/ca"
)

// watchCA hot-swaps the station's issuer when security staff install a new
// intermediate (or roots) into the CA folder while the station runs (`wsc
// ca intermediate install`, `wsc ca root rollover`): it reloads when
// intermediate.crt or root.crt changes, and, when onHUP is set (headless
// runs, as daemons do), on SIGHUP. The operator screen leaves SIGHUP alone:
// there it means the terminal went away and the station must stop. The new key is
// unlocked with the passphrase read again from the configured source; a
// prompt or an fd cannot be read twice, and then the station says to
// restart. say receives one sentence per reload.
func (l *line) watchCA(ctx context.Context, every time.Duration, onHUP bool, say func(string)) {
	hup := make(chan os.Signal, 1)
	if onHUP {
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
	}
	files := []string{filepath.Join(l.cfg.CA.Dir, ca.IntermediateCertFile), filepath.Join(l.cfg.CA.Dir, ca.RootCertFile)}
	last := stamp(files)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		case <-t.C:
			if stamp(files) == last {
				continue
			}
		}
		now := stamp(files)
		msg, done := l.reloadCA(ctx)
		if done {
			// A failed reload (a half-installed folder, say) is tried
			// again at the next tick.
			last = now
		}
		if msg != "" {
			say(msg)
		}
	}
}

// stamp identifies the files' current contents cheaply (size and mtime).
func stamp(files []string) string {
	var b strings.Builder
	for _, f := range files {
		if st, err := os.Stat(f); err == nil {
			fmt.Fprintf(&b, "%d:%d;", st.Size(), st.ModTime().UnixNano())
		}
	}
	return b.String()
}

// reloadCA re-reads the CA folder; done is false when it should be tried
// again later.
func (l *line) reloadCA(ctx context.Context) (msg string, done bool) {
	src := l.cfg.CA.Passphrase
	if src == "prompt" || strings.HasPrefix(src, "fd:") {
		return "the CA folder changed: restart the station to issue from the new intermediate (its passphrase comes from " +
			strings.SplitN(src, ":", 2)[0] + " and cannot be read again)", true
	}
	pass, err := ca.ReadPassphrase(src)
	if err != nil {
		return "CA reload failed, still issuing from the previous intermediate: " + err.Error(), false
	}
	defer clear(pass)
	changed, err := l.ca.Reload(ctx, pass)
	if err != nil {
		return "CA reload failed, still issuing from the previous intermediate: " + err.Error(), false
	}
	if !changed {
		return "", true
	}
	iss := l.ca.Issuer()
	return fmt.Sprintf("CA reloaded: now issuing from %q (key %x)", iss.Subject.CommonName, iss.SubjectKeyId), true
}
