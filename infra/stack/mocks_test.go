package stack

import (
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// recorded is one resource the program registered, as the engine saw it.
type recorded struct {
	typ, name       string
	inputs          resource.PropertyMap
	retainOnDelete  bool
	deleteBefore    bool
	deleteBeforeSet bool
	dependsOn       []string
	ignoreChanges   []string
}

// mocks stands in for the Pulumi engine and the docker provider, for fast
// tests of the program's shape (counts, names, secrecy, config errors); it
// records every resource and echoes inputs as outputs. What the real
// provider does with them is TestDeployToLocalEngine's to show.
type mocks struct {
	mu        sync.Mutex
	resources []recorded
	// What a container run to its end (attach) said, by resource name:
	// its exit status and output; none is a run that passed, silently.
	runs map[string]ran
}

type ran struct {
	exit int
	logs string
}

func (m *mocks) NewResource(args pulumi.MockResourceArgs) (string, resource.PropertyMap, error) {
	r := recorded{typ: args.TypeToken, name: args.Name, inputs: args.Inputs}
	if rpc := args.RegisterRPC; rpc != nil {
		r.retainOnDelete = rpc.GetRetainOnDelete()
		r.deleteBefore = rpc.GetDeleteBeforeReplace()
		r.deleteBeforeSet = rpc.GetDeleteBeforeReplaceDefined()
		r.dependsOn = rpc.GetDependencies()
		r.ignoreChanges = rpc.GetIgnoreChanges()
	}
	m.mu.Lock()
	m.resources = append(m.resources, r)
	m.mu.Unlock()

	outputs := args.Inputs.Copy()
	switch args.TypeToken {
	case "docker:index/remoteImage:RemoteImage":
		outputs["imageId"] = resource.NewStringProperty("sha256:" + args.Name + "@" + args.Inputs["name"].StringValue())
	case containerType:
		if attach := args.Inputs["attach"]; attach.IsBool() && attach.BoolValue() {
			outputs["exitCode"] = resource.NewNumberProperty(float64(m.runs[args.Name].exit))
			outputs["containerLogs"] = resource.NewStringProperty(m.runs[args.Name].logs)
		}
	}
	return args.Name + "-id", outputs, nil
}

func (m *mocks) Call(args pulumi.MockCallArgs) (resource.PropertyMap, error) {
	return resource.PropertyMap{}, nil
}

// run is one program run: what it registered and exported, or its error.
type run struct {
	resources []recorded
	outputs   map[string]any
}

func (r run) byType(typ string) []recorded {
	var out []recorded
	for _, res := range r.resources {
		if res.typ == typ {
			out = append(out, res)
		}
	}
	return out
}

func (r run) named(name string) recorded {
	for _, res := range r.resources {
		if res.name == name {
			return res
		}
	}
	return recorded{}
}

const (
	containerType = "docker:index/container:Container"
	networkType   = "docker:index/network:Network"
	volumeType    = "docker:index/volume:Volume"
)

// testConfig is a valid configuration; tests change what they examine.
func testConfig() map[string]string {
	return map[string]string{"tally:redisPassword": "s3cret-password-42", "tally:plainHTTP": "true"}
}

// runProgram runs the stack under mocks, as `pulumi up` would run main.
func runProgram(t *testing.T, stack string, config map[string]string, files Files) (run, error) {
	t.Helper()
	return runServices(t, stack, config, files, nil)
}

// runServices is runProgram with the service list changed by edit (nil
// for none), as a change to services() would change it.
func runServices(t *testing.T, stack string, config map[string]string, files Files, edit func([]service) []service) (run, error) {
	t.Helper()
	return runWith(t, &mocks{}, stack, config, files, edit)
}

// runWith is runServices on the mocks m.
func runWith(t *testing.T, m *mocks, stack string, config map[string]string, files Files, edit func([]service) []service) (run, error) {
	t.Helper()
	result := run{outputs: map[string]any{}}
	// The outputs resolve on Pulumi's goroutines, possibly after RunErr
	// returns; done hands them over.
	done := make(chan map[string]any, 1)
	err := pulumi.RunErr(func(ctx *pulumi.Context) error {
		cfg, err := LoadConfig(ctx, files.Images)
		if err != nil {
			return err
		}
		svcs := services(cfg, files)
		if edit != nil {
			svcs = edit(svcs)
		}
		outputs, err := declare(ctx, cfg, files, svcs)
		if err != nil {
			return err
		}
		outputs.ToMapOutput().ApplyT(func(v map[string]any) error {
			done <- v
			return nil
		})
		return nil
	}, pulumi.WithMocks("tally", stack, m), func(info *pulumi.RunInfo) {
		info.Config = config
		info.ConfigSecretKeys = []string{"tally:redisPassword", "tally:caPem", "tally:certPem", "tally:keyPem", "tally:tlsCert", "tally:tlsKey"}
	})
	if err == nil {
		select {
		case result.outputs = <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("the stack's outputs never resolved")
		}
	}
	result.resources = m.resources
	return result, err
}

// repoFiles reads the real repository files, with a fixed app hash so runs
// compare equal.
func repoFiles(t *testing.T) Files {
	t.Helper()
	f, err := ReadFiles("../..")
	if err != nil {
		t.Fatal(err)
	}
	f.AppHash = "0123456789ab"
	return f
}

func mustRun(t *testing.T, stack string, config map[string]string) run {
	t.Helper()
	r, err := runProgram(t, stack, config, repoFiles(t))
	if err != nil {
		t.Fatalf("program failed: %v", err)
	}
	return r
}

func with(config map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range config {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// plain returns a property's value with secrets unwrapped.
func plain(v resource.PropertyValue) resource.PropertyValue {
	for {
		switch {
		case v.IsSecret():
			v = v.SecretValue().Element
		case v.IsOutput():
			v = v.OutputValue().Element
		default:
			return v
		}
	}
}

// decode returns a resource's inputs as T, a struct of the fields a test
// reads (JSON names, matched without regard to case), secrets unwrapped.
func decode[T any](t *testing.T, res recorded) T {
	t.Helper()
	var v T
	b, err := json.Marshal(plainValue(resource.NewObjectProperty(res.inputs)))
	if err == nil {
		err = json.Unmarshal(b, &v)
	}
	if err != nil {
		t.Fatalf("decoding the inputs of %s: %v", res.name, err)
	}
	return v
}

func plainValue(v resource.PropertyValue) any {
	v = plain(v)
	switch {
	case v.IsArray():
		out := []any{}
		for _, e := range v.ArrayValue() {
			out = append(out, plainValue(e))
		}
		return out
	case v.IsObject():
		out := map[string]any{}
		for k, e := range v.ObjectValue() {
			out[string(k)] = plainValue(e)
		}
		return out
	case v.IsComputed() || v.IsNull():
		return nil
	}
	return v.V
}
