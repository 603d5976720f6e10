package main

import (
	"context"
	"fmt"
	"io"
)

func notBuilt(name string) func(context.Context, []string, io.Writer, io.Writer) error {
	return func(context.Context, []string, io.Writer, io.Writer) error {
		return fmt.Errorf("%s: not built yet", name)
	}
}

var (
	cmdLockout = notBuilt("lockout")
)
