package ui

import (
	"context"
	"fmt"
	"testing"
)

func TestProbeFixture(t *testing.T) {
	f := newQAFixture(t)
	res, err := f.runner().Run(context.Background(), []string{f.dir}, func(d, n int) { fmt.Println("progress", d, n) })
	fmt.Println(err)
	for _, r := range res {
		fmt.Printf("%s|%s|%s|%s|%s|%s\n", r.File, r.SignerSerial, r.DeviceSerial, r.Status, r.Reason, r.Signer)
	}
}
