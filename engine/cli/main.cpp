#include <cstdio>
int main() { std::puts("qllm"); return 0; }
