{
  "variables": {
    "lorakit_prebuilt%": 0
  },
  "targets": [
    {
      "target_name": "lorakit_native",
      "sources": [
        "<!@(node -p \"require('fs').readdirSync('native/src').filter(f=>f.endsWith('.cc')).sort().map(f=>'native/src/'+f).join(' ')\")"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions", "-O2", "-O0"],
      "cflags_cc!": ["-fno-exceptions", "-O2", "-O0"],
      "cflags": ["-O3", "-fno-math-errno", "-fno-trapping-math"],
      "cflags_cc": ["-std=c++17", "-O3", "-fno-math-errno", "-fno-trapping-math", "-pthread"],
      "ldflags": ["-pthread"],
      "conditions": [["lorakit_prebuilt==1", { "defines": ["LORAKIT_PREBUILT=1"] }]],
      "xcode_settings": {
        "GCC_OPTIMIZATION_LEVEL": "3",
        "OTHER_CPLUSPLUSFLAGS": ["-std=c++17", "-fno-math-errno", "-fno-trapping-math"]
      }
    }
  ]
}
