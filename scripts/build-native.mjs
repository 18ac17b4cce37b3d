// Builds the native kernel addon with node-gyp at install time.
// It never fails the install: when the toolchain is missing or the build breaks,
// lorakit runs on its TypeScript kernels and says so when it starts.
// LORAKIT_SKIP_NATIVE=1 skips the build.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";

if (process.env.LORAKIT_SKIP_NATIVE === "1") {
  console.error("lorakit: LORAKIT_SKIP_NATIVE=1, native kernels not built (TypeScript kernels will be used)");
  process.exit(0);
}
if (!existsSync("binding.gyp")) process.exit(0);

const gyp = process.env.npm_config_node_gyp;
const [cmd, args] = gyp ? [process.execPath, [gyp, "rebuild"]] : ["node-gyp", ["rebuild"]];
const r = spawnSync(cmd, args, { stdio: ["ignore", "inherit", "inherit"], env: process.env });
if (r.status !== 0) {
  console.error(
    "lorakit: the native kernels did not build (see above); lorakit will run on its TypeScript kernels.\n" +
      "  Possible fixes: install g++, make and python3, then run `npm run build:native`.",
  );
}
process.exit(0);
